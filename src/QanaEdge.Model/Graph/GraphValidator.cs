using QanaEdge.Model.Packaging;

namespace QanaEdge.Model.Graph;

/// <summary>
/// Checks that a <see cref="ModelGraph"/> is one the engines can run without further checks: indices in
/// range, topological order, per-operator shape rules, quantization parameters, size limits. The rules are
/// listed in docs/model-format.md ("Validation"). Throws <see cref="PackageFormatException"/> naming the
/// first offending tensor, node or field; never any other exception type, also for graphs built in code
/// with null arrays.
/// </summary>
public static class GraphValidator
{
    public static void Validate(ModelGraph graph)
    {
        if (graph is null) throw new PackageFormatException("graph: missing");
        TensorSpec[] tensors = graph.Tensors ?? throw new PackageFormatException("graph: tensors missing");
        Node[] nodes = graph.Nodes ?? throw new PackageFormatException("graph: nodes missing");
        if (tensors.Length == 0) throw new PackageFormatException("graph: no tensors");
        if (tensors.Length > PackageLimits.MaxTensors)
            throw new PackageFormatException($"graph: {tensors.Length} tensors exceed the limit of {PackageLimits.MaxTensors}");
        if (nodes.Length == 0) throw new PackageFormatException("graph: no nodes");
        if (nodes.Length > PackageLimits.MaxNodes)
            throw new PackageFormatException($"graph: {nodes.Length} nodes exceed the limit of {PackageLimits.MaxNodes}");

        long total = 0;
        for (int i = 0; i < tensors.Length; i++) total += ValidateTensor(i, tensors[i]);
        if (total > PackageLimits.MaxTotalTensorElements)
            throw new PackageFormatException($"graph: tensors hold {total} elements in all, over the limit of {PackageLimits.MaxTotalTensorElements}");

        CheckIndex("graph: input tensor", graph.InputTensor, tensors.Length);
        CheckIndex("graph: logits tensor", graph.LogitsTensor, tensors.Length);
        CheckIndex("graph: output tensor", graph.OutputTensor, tensors.Length);
        if (tensors[graph.InputTensor].Type != DataType.Int8)
            throw new PackageFormatException($"graph: input tensor {graph.InputTensor} must be int8");
        long classes = (long)tensors[graph.LogitsTensor].Height * tensors[graph.LogitsTensor].Width * tensors[graph.LogitsTensor].Channels;
        if (classes > PackageLimits.MaxClasses)
            throw new PackageFormatException($"graph: the logits tensor holds {classes} classes, over the limit of {PackageLimits.MaxClasses}");

        var producer = new int[tensors.Length];
        Array.Fill(producer, -1);
        var names = new HashSet<string>(StringComparer.Ordinal);
        int readout = -1;
        long macs = 0;
        for (int n = 0; n < nodes.Length; n++)
        {
            Node node = nodes[n] ?? throw new PackageFormatException($"node {n}: missing");
            string where = Where(n, node);
            if (string.IsNullOrEmpty(node.Name)) throw new PackageFormatException($"node {n}: empty name");
            if (node.Name.Length > PackageLimits.MaxNameLength)
                throw new PackageFormatException($"node {n}: name longer than {PackageLimits.MaxNameLength} characters");
            if (!names.Add(node.Name)) throw new PackageFormatException($"{where}: duplicate node name");
            if (!Enum.IsDefined(node.Kind)) throw new PackageFormatException($"{where}: unknown operator {(int)node.Kind}");
            CheckText(where, "reparameterisation", node.Reparameterisation);
            CheckText(where, "kernel name", node.Kernel);

            int[] inputs = node.Inputs ?? throw new PackageFormatException($"{where}: inputs missing");
            if (inputs.Length > PackageLimits.MaxNodeInputs)
                throw new PackageFormatException($"{where}: {inputs.Length} inputs exceed the limit of {PackageLimits.MaxNodeInputs}");
            foreach (int input in inputs)
            {
                CheckIndex($"{where}: input", input, tensors.Length);
                if (input != graph.InputTensor && producer[input] < 0)
                    throw new PackageFormatException($"{where}: input tensor {input} '{tensors[input].Name}' is used before any node produces it");
                if (tensors[input].Type != DataType.Int8)
                    throw new PackageFormatException($"{where}: input tensor {input} '{tensors[input].Name}' is not int8");
            }
            CheckIndex($"{where}: output", node.Output, tensors.Length);
            if (node.Output == graph.InputTensor)
                throw new PackageFormatException($"{where}: writes the graph's input tensor");
            if (producer[node.Output] >= 0)
                throw new PackageFormatException($"{where}: output tensor {node.Output} is already produced by node {producer[node.Output]}");
            if (Array.IndexOf(inputs, node.Output) >= 0)
                throw new PackageFormatException($"{where}: output tensor {node.Output} is also its input");
            producer[node.Output] = n;

            ValidateNode(where, node, tensors);
            // Each weight is used once per output position (a dense node has one), so this is what the engine runs.
            if (TakesParameters(node.Kind))
            {
                TensorSpec y = tensors[node.Output];
                macs += node.Weights!.LongLength * (node.Kind == OpKind.Dense ? 1 : (long)y.Height * y.Width);
                if (macs > PackageLimits.MaxMacs)
                    throw new PackageFormatException($"{where}: brings the graph to {macs} multiply-accumulates per run, over the limit of {PackageLimits.MaxMacs}");
            }
            if (node.Kind == OpKind.SpikingReadout)
            {
                if (readout >= 0) throw new PackageFormatException($"{where}: a graph has at most one spiking readout (node {readout} is one)");
                readout = n;
            }
        }

        for (int t = 0; t < tensors.Length; t++)
            if (t != graph.InputTensor && producer[t] < 0)
                throw new PackageFormatException($"tensor {t} '{tensors[t].Name}': produced by no node");

        TensorSpec logits = tensors[graph.LogitsTensor];
        if (graph.LogitsTensor == graph.InputTensor) throw new PackageFormatException("graph: the logits tensor is the input tensor");
        if (logits.Type != DataType.Int8) throw new PackageFormatException("graph: the logits tensor must be int8");
        if (readout >= 0)
        {
            Node r = nodes[readout];
            if (r.Inputs[0] != graph.LogitsTensor)
                throw new PackageFormatException($"{Where(readout, r)}: must read the logits tensor {graph.LogitsTensor}");
            if (r.Output != graph.OutputTensor)
                throw new PackageFormatException($"{Where(readout, r)}: must write the output tensor {graph.OutputTensor}");
        }
        else if (graph.OutputTensor != graph.LogitsTensor)
        {
            throw new PackageFormatException("graph: without a spiking readout the output tensor must be the logits tensor");
        }
    }

    private static long ValidateTensor(int i, TensorSpec t)
    {
        if (t is null) throw new PackageFormatException($"tensor {i}: missing");
        string where = $"tensor {i} '{t.Name}'";
        if (t.Name is null) throw new PackageFormatException($"tensor {i}: name missing");
        if (t.Name.Length > PackageLimits.MaxNameLength)
            throw new PackageFormatException($"tensor {i}: name longer than {PackageLimits.MaxNameLength} characters");
        if (t.Height < 1 || t.Width < 1 || t.Channels < 1)
            throw new PackageFormatException($"{where}: shape {t.Height}x{t.Width}x{t.Channels} has a dimension below 1");
        long elements = (long)t.Height * t.Width * t.Channels;
        if (t.Height > PackageLimits.MaxTensorElements || t.Width > PackageLimits.MaxTensorElements
            || t.Channels > PackageLimits.MaxTensorElements || elements > PackageLimits.MaxTensorElements)
            throw new PackageFormatException($"{where}: {t.Height}x{t.Width}x{t.Channels} exceeds the limit of {PackageLimits.MaxTensorElements} elements");
        if (!Enum.IsDefined(t.Type)) throw new PackageFormatException($"{where}: unknown data type {(int)t.Type}");
        CheckScale(where, "scale", t.Scale);
        if (t.ZeroPoint < sbyte.MinValue || t.ZeroPoint > sbyte.MaxValue)
            throw new PackageFormatException($"{where}: zero point {t.ZeroPoint} outside int8");
        return elements;
    }

    private static void ValidateNode(string where, Node node, TensorSpec[] tensors)
    {
        TensorSpec output = tensors[node.Output];
        bool readout = node.Kind == OpKind.SpikingReadout;
        if (readout != (output.Type == DataType.Int32))
            throw new PackageFormatException(readout
                ? $"{where}: the readout's output tensor must be int32"
                : $"{where}: output tensor must be int8");

        // Fields that belong to other operators must be absent, so that a file cannot carry data the
        // engines silently ignore (and a round trip is exact).
        bool parameterised = TakesParameters(node.Kind);
        bool windowed = node.Kind is OpKind.Conv2D or OpKind.DepthwiseConv2D;
        if (!parameterised && (node.Weights is not null || node.WeightScales is not null || node.Bias is not null))
            throw new PackageFormatException($"{where}: weights, weight scales or bias on an operator that takes none");
        if (node.Kind != OpKind.Sigmoid && node.Table is not null)
            throw new PackageFormatException($"{where}: lookup table on an operator that takes none");
        if (!readout && (node.Thresholds is not null || node.TimeSteps != 0))
            throw new PackageFormatException($"{where}: readout thresholds or time steps on an operator that takes none");
        if (!windowed && (node.KernelHeight != 1 || node.KernelWidth != 1))
            throw new PackageFormatException($"{where}: kernel {node.KernelHeight}x{node.KernelWidth} on an operator without a window (must be 1x1)");
        // Pointwise is a GEMM over the pixels: it keeps height and width. A strided 1x1 projection is a
        // conv2d with a 1x1 kernel, which the engines run as one.
        if (node.Kind == OpKind.PointwiseConv2D && (node.StrideHeight != 1 || node.StrideWidth != 1))
            throw new PackageFormatException($"{where}: stride {node.StrideHeight}x{node.StrideWidth} on a pointwise convolution, which keeps height and width (must be 1x1; a strided 1x1 projection is a conv2d with a 1x1 kernel)");
        if (!windowed && (node.StrideHeight != 1 || node.StrideWidth != 1))
            throw new PackageFormatException($"{where}: stride {node.StrideHeight}x{node.StrideWidth} on an operator without a stride (must be 1x1)");
        if (!Enum.IsDefined(node.Padding)) throw new PackageFormatException($"{where}: unknown padding {(int)node.Padding}");
        if (node.ClampMin < sbyte.MinValue || node.ClampMax > sbyte.MaxValue || node.ClampMin > node.ClampMax)
            throw new PackageFormatException($"{where}: clamp [{node.ClampMin}, {node.ClampMax}] must lie inside [-128, 127] with min <= max");

        int[] inputs = node.Inputs;
        switch (node.Kind)
        {
            case OpKind.Conv2D:
            case OpKind.DepthwiseConv2D:
            case OpKind.PointwiseConv2D:
            {
                Arity(where, inputs, 1);
                TensorSpec x = tensors[inputs[0]];
                CheckWindow(where, node);
                int outH = OutputSize(where, "height", x.Height, node.KernelHeight, node.StrideHeight, node.Padding);
                int outW = OutputSize(where, "width", x.Width, node.KernelWidth, node.StrideWidth, node.Padding);
                if (output.Height != outH || output.Width != outW)
                    throw new PackageFormatException($"{where}: output is {output.Height}x{output.Width}, the window rule gives {outH}x{outW}");
                long cout = output.Channels;
                long expected = node.Kind switch
                {
                    OpKind.Conv2D => cout * node.KernelHeight * node.KernelWidth * x.Channels,
                    OpKind.DepthwiseConv2D => (long)node.KernelHeight * node.KernelWidth * x.Channels,
                    _ => cout * x.Channels,
                };
                if (node.Kind == OpKind.DepthwiseConv2D && output.Channels != x.Channels)
                    throw new PackageFormatException($"{where}: depthwise output has {output.Channels} channels, input {x.Channels}");
                string layout = node.Kind switch
                {
                    OpKind.Conv2D => "[Cout,Kh,Kw,Cin]",
                    OpKind.DepthwiseConv2D => "[Kh,Kw,C]",
                    _ => "[Cout,Cin]",
                };
                CheckParameters(where, node, expected, layout, output.Channels);
                CheckWeightedIntegers(where, node, x, output);
                break;
            }
            case OpKind.Dense:
            {
                Arity(where, inputs, 1);
                TensorSpec x = tensors[inputs[0]];
                if (output.Height != 1 || output.Width != 1)
                    throw new PackageFormatException($"{where}: dense output must be 1x1xOut, is {output.Height}x{output.Width}x{output.Channels}");
                long inLength = (long)x.Height * x.Width * x.Channels;
                CheckParameters(where, node, output.Channels * inLength, "[Out,In]", output.Channels);
                CheckWeightedIntegers(where, node, x, output);
                break;
            }
            case OpKind.Concat:
            {
                if (inputs.Length < 2) throw new PackageFormatException($"{where}: concat needs at least 2 inputs, has {inputs.Length}");
                long channels = 0;
                foreach (int i in inputs)
                {
                    TensorSpec x = tensors[i];
                    if (x.Height != output.Height || x.Width != output.Width)
                        throw new PackageFormatException($"{where}: input {i} is {x.Height}x{x.Width}, output {output.Height}x{output.Width}");
                    channels += x.Channels;
                }
                if (channels != output.Channels)
                    throw new PackageFormatException($"{where}: input channels sum to {channels}, output has {output.Channels}");
                foreach (int i in inputs) CheckMultiplier(where, $"s_in/s_out of input {i}", tensors[i].Scale / output.Scale);
                break;
            }
            case OpKind.Add:
            {
                Arity(where, inputs, 2);
                SameShape(where, tensors[inputs[0]], output, "first input");
                SameShape(where, tensors[inputs[1]], output, "second input");
                // The engine aligns both operands to 2·max(s_a, s_b) with 2^20 of headroom (docs/engine.md, Add).
                double a = tensors[inputs[0]].Scale, b = tensors[inputs[1]].Scale, twiceMax = 2 * Math.Max(a, b);
                CheckMultiplier(where, "s_a/(2·max(s_a, s_b))", a / twiceMax);
                CheckMultiplier(where, "s_b/(2·max(s_a, s_b))", b / twiceMax);
                CheckMultiplier(where, "2·max(s_a, s_b)/(2^20·s_out)", twiceMax / ((1 << 20) * output.Scale));
                break;
            }
            case OpKind.GlobalAvgPool:
            {
                Arity(where, inputs, 1);
                TensorSpec x = tensors[inputs[0]];
                if (output.Height != 1 || output.Width != 1 || output.Channels != x.Channels)
                    throw new PackageFormatException($"{where}: output must be 1x1x{x.Channels}, is {output.Height}x{output.Width}x{output.Channels}");
                CheckMultiplier(where, "s_in/(H·W·s_out)", x.Scale / ((long)x.Height * x.Width * output.Scale));
                break;
            }
            case OpKind.Sigmoid:
            {
                Arity(where, inputs, 1);
                SameShape(where, tensors[inputs[0]], output, "input");
                if (node.Table is null) throw new PackageFormatException($"{where}: lookup table missing");
                if (node.Table.Length != 256) throw new PackageFormatException($"{where}: lookup table has {node.Table.Length} entries, must have 256");
                break;
            }
            case OpKind.Mul:
            {
                Arity(where, inputs, 2);
                TensorSpec x = tensors[inputs[0]], g = tensors[inputs[1]];
                SameShape(where, x, output, "first input");
                bool channel = g.Height == 1 && g.Width == 1 && g.Channels == x.Channels;
                bool spatial = g.Height == x.Height && g.Width == x.Width && g.Channels == 1;
                bool full = g.Height == x.Height && g.Width == x.Width && g.Channels == x.Channels;
                if (!channel && !spatial && !full)
                    throw new PackageFormatException($"{where}: gate {g.Height}x{g.Width}x{g.Channels} does not broadcast to {x.Height}x{x.Width}x{x.Channels} (allowed: 1x1xC, HxWx1, HxWxC)");
                CheckMultiplier(where, "s_x·s_gate/s_out", x.Scale * g.Scale / output.Scale);
                break;
            }
            case OpKind.Clamp:
            {
                Arity(where, inputs, 1);
                SameShape(where, tensors[inputs[0]], output, "input");
                CheckMultiplier(where, "s_in/s_out", tensors[inputs[0]].Scale / output.Scale);
                break;
            }
            case OpKind.Reshape:
            {
                Arity(where, inputs, 1);
                TensorSpec x = tensors[inputs[0]];
                if ((long)x.Height * x.Width * x.Channels != (long)output.Height * output.Width * output.Channels)
                    throw new PackageFormatException($"{where}: reshape changes the element count ({x.Height}x{x.Width}x{x.Channels} -> {output.Height}x{output.Width}x{output.Channels})");
                // A reshape is a view: it cannot requantize.
                if (x.Scale != output.Scale || x.ZeroPoint != output.ZeroPoint)
                    throw new PackageFormatException($"{where}: reshape must keep the input's scale and zero point");
                break;
            }
            case OpKind.SpikingReadout:
            {
                Arity(where, inputs, 1);
                TensorSpec x = tensors[inputs[0]];
                long k = (long)x.Height * x.Width * x.Channels;
                if ((long)output.Height * output.Width * output.Channels != k)
                    throw new PackageFormatException($"{where}: output has {(long)output.Height * output.Width * output.Channels} elements, input {k}");
                if (node.TimeSteps < 1 || node.TimeSteps > PackageLimits.MaxTimeSteps)
                    throw new PackageFormatException($"{where}: time steps {node.TimeSteps} outside [1, {PackageLimits.MaxTimeSteps}]");
                if (node.Thresholds is null) throw new PackageFormatException($"{where}: thresholds missing");
                if (node.Thresholds.Length != k)
                    throw new PackageFormatException($"{where}: {node.Thresholds.Length} thresholds for {k} classes (one per class)");
                for (int c = 0; c < node.Thresholds.Length; c++)
                    if (node.Thresholds[c] <= 0)
                        throw new PackageFormatException($"{where}: threshold {c} is {node.Thresholds[c]}, must be positive");
                break;
            }
        }
    }

    private static void CheckParameters(string where, Node node, long expectedWeights, string layout, int outChannels)
    {
        if (node.Weights is null) throw new PackageFormatException($"{where}: weights missing");
        if (node.Weights.LongLength != expectedWeights)
            throw new PackageFormatException($"{where}: {node.Weights.LongLength} weights, layout {layout} needs {expectedWeights}");
        if (node.WeightScales is null) throw new PackageFormatException($"{where}: weight scales missing");
        if (node.WeightScales.Length != 1 && node.WeightScales.Length != outChannels)
            throw new PackageFormatException($"{where}: {node.WeightScales.Length} weight scales, must be 1 or {outChannels} (one per output channel)");
        for (int i = 0; i < node.WeightScales.Length; i++) CheckScale(where, $"weight scale {i}", node.WeightScales[i]);
        if (node.Bias is null) throw new PackageFormatException($"{where}: bias missing");
        if (node.Bias.Length != outChannels)
            throw new PackageFormatException($"{where}: {node.Bias.Length} biases, must be {outChannels} (one per output channel)");
    }

    /// <summary>
    /// What the integer engine derives from a weighted node: per output channel the requantization multiplier
    /// s_in·s_w[c]/s_out, and a bound on the int32 accumulator. Checked here so that a package the engine could not
    /// prepare is refused when it is loaded (a signed update at its check), not when an engine is made from it.
    /// </summary>
    private static void CheckWeightedIntegers(string where, Node node, TensorSpec x, TensorSpec output)
    {
        int cout = output.Channels;
        bool depthwise = node.Kind == OpKind.DepthwiseConv2D;
        int taps = node.Weights!.Length / cout;
        for (int c = 0; c < cout; c++)
        {
            double ws = node.WeightScales![node.WeightScales.Length == 1 ? 0 : c];
            CheckMultiplier(where, $"s_in·s_w/s_out of channel {c}", x.Scale * ws / output.Scale);
            long bound = depthwise
                ? IntegerRange.AccumulatorBound(node.Weights, node.Bias![c], first: c, stride: cout)
                : IntegerRange.AccumulatorBound(node.Weights.AsSpan(c * taps, taps), node.Bias![c]);
            if (!IntegerRange.AccumulatorFits(bound))
                throw new PackageFormatException($"{where}: the int32 accumulator of channel {c} could overflow (|bias| + 255·Σ|w| = {bound}, must be below 2^31 − 1)");
        }
    }

    private static void CheckMultiplier(string where, string what, double real)
    {
        if (!IntegerRange.MultiplierFits(real))
            throw new PackageFormatException(double.IsFinite(real)
                ? $"{where}: requantization multiplier {what} = {real:G6} is too large for the integer engine (must be below 2^{IntegerRange.MaxMultiplierExponent})"
                : $"{where}: requantization multiplier {what} is not finite, although every scale is");
    }

    private static void CheckWindow(string where, Node node)
    {
        if (node.KernelHeight < 1 || node.KernelWidth < 1 || node.KernelHeight > PackageLimits.MaxKernelSize || node.KernelWidth > PackageLimits.MaxKernelSize)
            throw new PackageFormatException($"{where}: kernel {node.KernelHeight}x{node.KernelWidth} outside [1, {PackageLimits.MaxKernelSize}]");
        if (node.StrideHeight < 1 || node.StrideWidth < 1 || node.StrideHeight > PackageLimits.MaxStride || node.StrideWidth > PackageLimits.MaxStride)
            throw new PackageFormatException($"{where}: stride {node.StrideHeight}x{node.StrideWidth} outside [1, {PackageLimits.MaxStride}]");
    }

    /// <summary>Same: ceil(in/s) (zero-point padding, the extra row/column at the bottom/right).
    /// Valid: floor((in − k)/s) + 1, which needs in ≥ k.</summary>
    public static int OutputSize(int input, int kernel, int stride, Padding padding) =>
        padding == Padding.Same ? (input + stride - 1) / stride : (input - kernel) / stride + 1;

    private static int OutputSize(string where, string axis, int input, int kernel, int stride, Padding padding)
    {
        if (padding == Padding.Valid && input < kernel)
            throw new PackageFormatException($"{where}: input {axis} {input} is smaller than the kernel {kernel} with valid padding");
        return OutputSize(input, kernel, stride, padding);
    }

    private static void Arity(string where, int[] inputs, int expected)
    {
        if (inputs.Length != expected)
            throw new PackageFormatException($"{where}: {inputs.Length} inputs, the operator takes {expected}");
    }

    private static void SameShape(string where, TensorSpec a, TensorSpec output, string what)
    {
        if (a.Height != output.Height || a.Width != output.Width || a.Channels != output.Channels)
            throw new PackageFormatException($"{where}: {what} is {a.Height}x{a.Width}x{a.Channels}, output {output.Height}x{output.Width}x{output.Channels}");
    }

    private static void CheckIndex(string what, int index, int count)
    {
        if (index < 0 || index >= count)
            throw new PackageFormatException($"{what} index {index} out of range [0, {count})");
    }

    private static void CheckText(string where, string field, string? text)
    {
        if (text is null) throw new PackageFormatException($"{where}: {field} missing");
        if (text.Length > PackageLimits.MaxNameLength)
            throw new PackageFormatException($"{where}: {field} longer than {PackageLimits.MaxNameLength} characters");
    }

    internal static void CheckScale(string where, string field, double scale)
    {
        if (!double.IsFinite(scale) || scale <= 0)
            throw new PackageFormatException($"{where}: {field} {scale} must be finite and > 0");
    }

    /// <summary>True for the operators that carry weights, weight scales and a bias.</summary>
    internal static bool TakesParameters(OpKind kind) =>
        kind is OpKind.Conv2D or OpKind.DepthwiseConv2D or OpKind.PointwiseConv2D or OpKind.Dense;

    internal static string Where(int index, Node node) => $"node {index} '{node.Name}' ({node.Kind})";
}
