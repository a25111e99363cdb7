using QanaEdge.Model.Graph;
using QanaEdge.Model.Packaging;

namespace QanaEdge.Runtime.Plan;

/// <summary>
/// The prepare step: checks every node, computes its multipliers, folded biases and tables once, and
/// chooses its kernel. Everything a run needs is decided here; eval only dispatches.
/// </summary>
internal static class Planner
{
    public static Op[] Prepare(ModelGraph graph, bool optimized)
    {
        if (graph.Tensors.Length == 0 || graph.Nodes.Length == 0) throw new InvalidGraphException("the graph is empty");
        CheckIndex(graph, graph.InputTensor, "input tensor");
        CheckIndex(graph, graph.LogitsTensor, "logits tensor");
        CheckIndex(graph, graph.OutputTensor, "output tensor");
        var written = new bool[graph.Tensors.Length];
        written[graph.InputTensor] = true;
        var ops = new Op[graph.Nodes.Length];
        for (int i = 0; i < graph.Nodes.Length; i++)
        {
            var node = graph.Nodes[i] ?? throw new InvalidGraphException($"node {i} is missing");
            foreach (int t in node.Inputs)
            {
                CheckIndex(graph, t, $"input of node '{node.Name}'");
                if (!written[t]) throw new InvalidGraphException($"node '{node.Name}' reads tensor {t} before any node writes it");
            }
            CheckIndex(graph, node.Output, $"output of node '{node.Name}'");
            if (written[node.Output]) throw new InvalidGraphException($"node '{node.Name}' writes tensor {node.Output}, which is already written");
            written[node.Output] = true;
            ops[i] = Create(graph, i, node);
            ops[i].Optimized = optimized && ops[i].HasOptimized;
            if (ops[i] is ConvOp { Optimized: true } conv) conv.PrepareOptimized();
        }
        if (!written[graph.LogitsTensor] || !written[graph.OutputTensor])
            throw new InvalidGraphException("no node writes the logits or the output tensor");
        if (graph.Tensors[graph.LogitsTensor].Type != DataType.Int8) throw new InvalidGraphException("the logits tensor must be int8");
        return ops;
    }

    private static void CheckIndex(ModelGraph g, int t, string what)
    {
        if ((uint)t >= (uint)g.Tensors.Length || g.Tensors[t] is null)
            throw new InvalidGraphException($"{what}: tensor index {t} is out of range");
    }

    private static Op Create(ModelGraph g, int index, Node node)
    {
        var ins = node.Inputs.Select(t => g.Tensors[t]).ToArray();
        var output = g.Tensors[node.Output];
        int lo = Math.Max(node.ClampMin, sbyte.MinValue), hi = Math.Min(node.ClampMax, sbyte.MaxValue);
        if (lo > hi) throw new InvalidGraphException($"node '{node.Name}': empty clamp [{node.ClampMin}, {node.ClampMax}]");
        foreach (var t in ins.Append(output))
        {
            if (t.Height <= 0 || t.Width <= 0 || t.Channels <= 0) throw new InvalidGraphException($"tensor '{t.Name}' has an empty shape");
            if (!(t.Scale > 0) || !double.IsFinite(t.Scale)) throw new InvalidGraphException($"tensor '{t.Name}' has scale {t.Scale}");
            if (t.ZeroPoint < sbyte.MinValue || t.ZeroPoint > sbyte.MaxValue) throw new InvalidGraphException($"tensor '{t.Name}' has zero point {t.ZeroPoint}");
        }
        if (node.Kind != OpKind.SpikingReadout && output.Type != DataType.Int8)
            throw new InvalidGraphException($"node '{node.Name}' must write an int8 tensor");
        foreach (var t in ins)
            if (t.Type != DataType.Int8) throw new InvalidGraphException($"node '{node.Name}' reads the int32 tensor '{t.Name}'");

        void Arity(int n)
        {
            if (node.Inputs.Length != n) throw new InvalidGraphException($"node '{node.Name}' ({node.Kind}) needs {n} input(s), has {node.Inputs.Length}");
        }
        void Fail(string why) => throw new InvalidGraphException($"node '{node.Name}' ({node.Kind}): {why}");

        switch (node.Kind)
        {
            case OpKind.Conv2D:
            case OpKind.DepthwiseConv2D:
            case OpKind.PointwiseConv2D:
            case OpKind.Dense:
                Arity(1);
                return CreateConv(node, index, ins[0], output, lo, hi, Fail);
            case OpKind.Add:
            {
                Arity(2);
                if (ins[0].Length != output.Length || ins[1].Length != output.Length || !SameShape(ins[0], output) || !SameShape(ins[1], output))
                    Fail("inputs and output must have the same shape");
                double sMax = Math.Max(ins[0].Scale, ins[1].Scale);
                var op = new AddOp
                {
                    NodeIndex = index, Node = node, InputIndices = node.Inputs, Inputs = ins, OutputIndex = node.Output, Output = output, Lo = lo, Hi = hi,
                    MA = QuantizedMultiplier.FromReal(ins[0].Scale / (2 * sMax)),
                    MB = QuantizedMultiplier.FromReal(ins[1].Scale / (2 * sMax)),
                    MO = QuantizedMultiplier.FromReal(2 * sMax / ((1 << AddOp.LeftShift) * output.Scale)),
                };
                op.BuildTable();
                return op;
            }
            case OpKind.Concat:
            {
                if (node.Inputs.Length < 1) Fail("needs at least one input");
                if (ins.Any(t => t.Height != output.Height || t.Width != output.Width)) Fail("inputs must share the output's height and width");
                if (ins.Sum(t => t.Channels) != output.Channels) Fail("input channels do not add up to the output's");
                var op = new ConcatOp
                {
                    NodeIndex = index, Node = node, InputIndices = node.Inputs, Inputs = ins, OutputIndex = node.Output, Output = output, Lo = lo, Hi = hi,
                    M = ins.Select(t => QuantizedMultiplier.FromReal(t.Scale / output.Scale)).ToArray(),
                    Identity = ins.Select(t => t.Scale == output.Scale && t.ZeroPoint == output.ZeroPoint).ToArray(),
                };
                op.BuildTables();
                return op;
            }
            case OpKind.GlobalAvgPool:
            {
                Arity(1);
                if (output.Length != ins[0].Channels) Fail("output length must equal the input's channels");
                long positions = (long)ins[0].Height * ins[0].Width;
                if (positions * 255 >= int.MaxValue) Fail("input too large for an int32 sum");
                return new GapOp
                {
                    NodeIndex = index, Node = node, InputIndices = node.Inputs, Inputs = ins, OutputIndex = node.Output, Output = output, Lo = lo, Hi = hi,
                    M = QuantizedMultiplier.FromReal(ins[0].Scale / (positions * output.Scale)),
                };
            }
            case OpKind.Sigmoid:
            {
                Arity(1);
                if (node.Table is not { Length: 256 }) Fail("needs a 256-entry table");
                if (ins[0].Length != output.Length) Fail("input and output lengths differ");
                var op = new SigmoidOp
                {
                    NodeIndex = index, Node = node, InputIndices = node.Inputs, Inputs = ins, OutputIndex = node.Output, Output = output, Lo = lo, Hi = hi,
                    Table = node.Table!,
                };
                op.BuildTable();
                return op;
            }
            case OpKind.Mul:
            {
                Arity(2);
                var x = ins[0];
                var gate = ins[1];
                if (!SameShape(x, output)) Fail("the gated input and the output must have the same shape");
                GateShape shape;
                if (gate.Height == 1 && gate.Width == 1 && gate.Channels == x.Channels) shape = GateShape.Channel;
                else if (gate.Height == x.Height && gate.Width == x.Width && gate.Channels == 1) shape = GateShape.Spatial;
                else if (SameShape(gate, x)) shape = GateShape.Full;
                else { Fail($"gate [{gate.Height},{gate.Width},{gate.Channels}] does not broadcast to [{x.Height},{x.Width},{x.Channels}]"); return null!; }
                // A flat [1,1,C] gate may also arrive as a dense output [1,1,C]; [H,W,1] with C = 1 is the full shape.
                var op = new MulOp
                {
                    NodeIndex = index, Node = node, InputIndices = node.Inputs, Inputs = ins, OutputIndex = node.Output, Output = output, Lo = lo, Hi = hi,
                    Shape = shape,
                    M = QuantizedMultiplier.FromReal(x.Scale * gate.Scale / output.Scale),
                };
                op.BuildTable();
                return op;
            }
            case OpKind.Clamp:
            case OpKind.Reshape:
            {
                Arity(1);
                if (ins[0].Length != output.Length) Fail($"input length {ins[0].Length} differs from output length {output.Length}");
                var op = new RescaleOp
                {
                    NodeIndex = index, Node = node, InputIndices = node.Inputs, Inputs = ins, OutputIndex = node.Output, Output = output, Lo = lo, Hi = hi,
                    M = QuantizedMultiplier.FromReal(ins[0].Scale / output.Scale),
                    Identity = ins[0].Scale == output.Scale && ins[0].ZeroPoint == output.ZeroPoint,
                };
                op.BuildTable();
                return op;
            }
            case OpKind.SpikingReadout:
            {
                Arity(1);
                if (output.Type != DataType.Int32) Fail("writes int32 spike counts");
                if (output.Length != ins[0].Length) Fail("needs one count per logit");
                if (node.TimeSteps <= 0) Fail("the window T must be positive");
                if (node.Thresholds is null || node.Thresholds.Length != ins[0].Length) Fail("needs one threshold per class");
                if (node.Thresholds!.Any(t => t <= 0)) Fail("thresholds must be positive");
                return new ReadoutOp
                {
                    NodeIndex = index, Node = node, InputIndices = node.Inputs, Inputs = ins, OutputIndex = node.Output, Output = output, Lo = lo, Hi = hi,
                    TimeSteps = node.TimeSteps, Thresholds = node.Thresholds!,
                };
            }
            default:
                Fail("unknown operator");
                return null!;
        }
    }

    private static bool SameShape(TensorSpec a, TensorSpec b) => a.Height == b.Height && a.Width == b.Width && a.Channels == b.Channels;

    /// <summary>Output size and leading padding of one spatial axis.</summary>
    public static (int Out, int PadBefore) Window(int input, int kernel, int stride, Padding padding)
    {
        if (padding == Padding.Valid)
            return (input < kernel ? 0 : (input - kernel) / stride + 1, 0);
        int output = (input + stride - 1) / stride;
        int total = Math.Max((output - 1) * stride + kernel - input, 0);
        return (output, total / 2);          // the extra row/column of odd padding goes to the bottom/right
    }

    private static ConvOp CreateConv(Node node, int index, TensorSpec x, TensorSpec y, int lo, int hi, Action<string> fail)
    {
        int cin, cout, kh = 1, kw = 1, sh = 1, sw = 1, padTop = 0, padLeft = 0, hout = y.Height, wout = y.Width;
        switch (node.Kind)
        {
            case OpKind.Conv2D:
            case OpKind.DepthwiseConv2D:
            {
                kh = node.KernelHeight; kw = node.KernelWidth; sh = node.StrideHeight; sw = node.StrideWidth;
                if (kh <= 0 || kw <= 0 || sh <= 0 || sw <= 0) fail("kernel and stride must be positive");
                var (ho, pt) = Window(x.Height, kh, sh, node.Padding);
                var (wo, pl) = Window(x.Width, kw, sw, node.Padding);
                if (ho != y.Height || wo != y.Width) fail($"output is {y.Height}x{y.Width}, the window gives {ho}x{wo}");
                padTop = pt; padLeft = pl;
                cin = x.Channels;
                cout = y.Channels;
                if (node.Kind == OpKind.DepthwiseConv2D && cin != cout) fail("depthwise needs as many output channels as input channels");
                break;
            }
            case OpKind.PointwiseConv2D:
                if (x.Height != y.Height || x.Width != y.Width) fail("pointwise keeps height and width");
                cin = x.Channels; cout = y.Channels;
                break;
            default:
                cin = x.Length; cout = y.Length; hout = 1; wout = 1;
                break;
        }
        int wLength = node.Kind switch
        {
            OpKind.Conv2D => cout * kh * kw * cin,
            OpKind.DepthwiseConv2D => kh * kw * cout,
            _ => cout * cin,
        };
        if (node.Weights is null || node.Weights.Length != wLength) fail($"needs {wLength} weights, has {node.Weights?.Length ?? 0}");
        if (node.WeightScales is null || (node.WeightScales.Length != 1 && node.WeightScales.Length != cout))
            fail("needs one weight scale or one per output channel");
        if (node.Bias is not null && node.Bias.Length != cout) fail($"needs {cout} biases, has {node.Bias.Length}");
        var bias = node.Bias ?? new int[cout];
        var mult = new int[cout];
        var rshift = new int[cout];
        var weights = node.Weights!;
        int taps = wLength / cout;
        for (int c = 0; c < cout; c++)
        {
            double ws = node.WeightScales![node.WeightScales.Length == 1 ? 0 : c];
            if (!(ws > 0) || !double.IsFinite(ws)) fail($"weight scale {ws} of channel {c}");
            var m = QuantizedMultiplier.FromReal(x.Scale * ws / y.Scale);
            mult[c] = m.Multiplier;
            rshift[c] = m.RightShift;
            long bound = node.Kind == OpKind.DepthwiseConv2D
                ? IntegerRange.AccumulatorBound(weights, bias[c], first: c, stride: cout)
                : IntegerRange.AccumulatorBound(weights.AsSpan(c * taps, taps), bias[c]);
            if (!IntegerRange.AccumulatorFits(bound)) fail($"accumulator of channel {c} could overflow int32 (bound {bound})");
        }
        return new ConvOp
        {
            NodeIndex = index, Node = node, InputIndices = node.Inputs, Inputs = [x], OutputIndex = node.Output, Output = y, Lo = lo, Hi = hi,
            Kind = node.Kind, Kh = kh, Kw = kw, Sh = sh, Sw = sw, PadTop = padTop, PadLeft = padLeft,
            Hin = x.Height, Win = x.Width, Cin = cin, Hout = hout, Wout = wout, Cout = cout,
            W = weights, Bias = bias, Mult = mult, RShift = rshift, ZpIn = x.ZeroPoint, ZpOut = y.ZeroPoint,
        };
    }
}
