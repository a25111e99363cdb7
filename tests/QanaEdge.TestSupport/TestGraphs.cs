using QanaEdge.Model;
using QanaEdge.Model.Graph;
using QanaEdge.Model.Packaging;

namespace QanaEdge.TestSupport;

/// <summary>Model packages built in code for tests and benchmarks.</summary>
public static class TestGraphs
{
    /// <summary>
    /// A random VALID graph exercising every operator: random shapes (odd sizes included), kernel sizes,
    /// strides, paddings, scales and zero points; per-tensor and per-channel weight scales; every gate shape.
    /// </summary>
    /// <param name="maxSize">Upper bound of the input height/width.</param>
    /// <param name="maxChannels">Upper bound of channel counts.</param>
    /// <param name="classes">Number of logits (and readout neurons).</param>
    public static ModelPackage RandomGraph(int seed, int maxSize = 11, int maxChannels = 21, int classes = 7)
    {
        var b = new GraphBuilder(seed);
        var r = b.Rng;
        int h = r.Next(3, maxSize + 1), w = r.Next(3, maxSize + 1), c = r.Next(1, 5);
        int input = b.Input(h, w, c);
        Padding Pad() => r.Next(2) == 0 ? Padding.Same : Padding.Valid;
        int Ch() => r.Next(1, maxChannels + 1);

        // Stem: dense convolution with a random window (rectangular sometimes) and stride.
        int kh = r.Next(1, 4), kwid = r.Next(1, 4);
        var pad = Math.Min(h, w) < 3 ? Padding.Same : Pad();
        int t = b.Weighted("stem", OpKind.Conv2D, input, Ch(), kh, r.Next(1, 3), pad, relu6: r.Next(3) > 0, kw: kwid, strideW: r.Next(1, 3),
            perChannel: r.Next(2) == 0);
        // Depthwise + pointwise (separable), then the ghost concat.
        var dpad = Math.Min(b[t].Height, b[t].Width) < 3 ? Padding.Same : Pad();
        int dw = b.Weighted("dw", OpKind.DepthwiseConv2D, t, 0, 3, r.Next(1, 3), dpad, relu6: r.Next(2) == 0);
        int pw = b.Weighted("pw", OpKind.PointwiseConv2D, dw, Ch(), relu6: r.Next(2) == 0);
        int ghost = b.Weighted("ghost", OpKind.DepthwiseConv2D, pw, 0, r.Next(1, 4), 1, Padding.Same);
        int cat = b.Concat("concat", [pw, ghost], relu6: r.Next(2) == 0, sameQuantization: r.Next(4) == 0);
        // Full gate (SA-ECA), spatial gate, residual add, standalone clamp.
        int e1 = b.Weighted("eca-pw", OpKind.PointwiseConv2D, cat, b[cat].Channels);
        int e2 = b.Sigmoid("eca-sig", e1);
        int gated = b.Mul("eca-gate", cat, e2, relu6: r.Next(2) == 0);
        int s1 = b.Weighted("sa-pw", OpKind.PointwiseConv2D, gated, 1);
        int s2 = b.Sigmoid("sa-sig", s1);
        int sgated = b.Mul("sa-gate", gated, s2);
        int proj = b.Weighted("proj", OpKind.PointwiseConv2D, cat, b[cat].Channels);
        int sum = b.Add("add", sgated, proj, relu6: r.Next(2) == 0);
        int lo = r.Next(-128, 0), hi = r.Next(lo, 128);
        int clamped = b.Clamp("clamp", sum, lo, hi, rescale: r.Next(2) == 0);
        // Squeeze-and-excitation: GAP → dense → ReLU → dense → sigmoid → channel gate.
        int gap = b.Gap("gap", clamped);
        int d1 = b.Weighted("se-fc1", OpKind.Dense, gap, r.Next(1, 9), relu6: true);
        int d2 = b.Weighted("se-fc2", OpKind.Dense, d1, b[clamped].Channels);
        int sg = b.Sigmoid("se-sig", d2);
        int se = b.Mul("se-gate", clamped, sg);
        int flat = b.Flatten("flatten", se);
        int logits = b.Weighted("head", OpKind.Dense, flat, classes, perChannel: r.Next(2) == 0);
        var thresholds = Enumerable.Range(0, classes).Select(_ => r.Next(8, 300)).ToArray();
        int counts = b.Readout("readout", logits, r.Next(1, 40), thresholds);
        return Wrap(b.Build(input, logits, counts), $"random-{seed}", h, w, c, 1.0 / 8);
    }

    /// <summary>
    /// The QANA-shaped integer network of the design (stem, four Ghost blocks with SA-ECA and residual
    /// projections, spike-compatible transform, SE, flatten, dense head, spiking readout) with random but
    /// sensibly scaled weights, wrapped in a package with a complete manifest.
    /// </summary>
    public static ModelPackage QanaShaped(int seed, int inputSize = 64)
    {
        if (inputSize < 8 || inputSize % 8 != 0) throw new ArgumentOutOfRangeException(nameof(inputSize), "a multiple of 8, at least 8");
        var b = new GraphBuilder(seed);
        int input = b.Input(inputSize, inputSize, 3);
        int x = b.Weighted("stem", OpKind.Conv2D, input, 24, 3, 1, Padding.Same, relu6: true);
        (int, int, int)[] blocks = [(24, 48, 1), (48, 64, 2), (64, 96, 2), (96, 128, 2)];
        for (int i = 0; i < blocks.Length; i++)
        {
            var (_, cout, stride) = blocks[i];
            string p = $"block{i + 1}";
            int dw = b.Weighted($"{p}.primary.dw", OpKind.DepthwiseConv2D, x, 0, 3, stride, Padding.Same);
            int pw = b.Weighted($"{p}.primary.pw", OpKind.PointwiseConv2D, dw, cout / 2);
            int ghost = b.Weighted($"{p}.ghost.dw", OpKind.DepthwiseConv2D, pw, 0, 3, 1, Padding.Same);
            int cat = b.Concat($"{p}.concat_bn_relu6", [pw, ghost], relu6: true);
            int e1 = b.Weighted($"{p}.eca.dw", OpKind.DepthwiseConv2D, cat, 0, 3, 1, Padding.Same);
            int e2 = b.Weighted($"{p}.eca.pw", OpKind.PointwiseConv2D, e1, cout);
            int e3 = b.Sigmoid($"{p}.eca.sigmoid", e2);
            int gated = b.Mul($"{p}.eca.gate", cat, e3);
            int proj = b.Weighted($"{p}.residual.proj", OpKind.Conv2D, x, cout, 1, stride, Padding.Same);
            x = b.Add($"{p}.residual.add", gated, proj);
        }
        int tdw = b.Weighted("transform.dw", OpKind.DepthwiseConv2D, x, 0, 3, 1, Padding.Same);
        int tpw = b.Weighted("transform.pw_bn_relu6", OpKind.PointwiseConv2D, tdw, 128, relu6: true);
        int gap = b.Gap("se.gap", tpw);
        int f1 = b.Weighted("se.fc1_relu", OpKind.Dense, gap, 16, relu6: true);
        int f2 = b.Weighted("se.fc2", OpKind.Dense, f1, 128);
        int sg = b.Sigmoid("se.sigmoid", f2);
        int se = b.Mul("se.gate", tpw, sg);
        int flat = b.Flatten("flatten", se);
        int logits = b.Weighted("head", OpKind.Dense, flat, Classes.Count);
        int theta = 64;
        int counts = b.Readout("readout", logits, 32, Enumerable.Repeat(theta, Classes.Count).ToArray());
        var graph = b.Build(input, logits, counts);
        // β = s_logit·θ per unit count: the readout then tends to softmax(real logits) as T grows.
        return Wrap(graph, $"qana-shaped-{seed}", inputSize, inputSize, 3, graph.Tensors[logits].Scale * theta);
    }

    /// <summary>
    /// <see cref="QanaShaped"/> made to fit the akd1000 profile (<see cref="ProfileChecker"/> finds nothing): the stem
    /// (the layer that reads the 8-bit input) keeps its weights and output; after it, weights are clipped to 4 bits,
    /// weight scales rounded to powers of two, and every activation is symmetric 4-bit ([0, 15] at the power-of-two scale nearest 16× its 8-bit one, gates at 1/16, sigmoid tables rebuilt for them), biases keep their real values; the
    /// logits keep their own quantization (the chip's last layer emits potentials). Labelled <c>akd1000</c>.
    /// </summary>
    public static ModelPackage Akd1000Shaped(int seed, int inputSize = 64)
    {
        ModelGraph g = QanaShaped(seed, inputSize).Graph;
        var first = g.Nodes.Where(n => Array.IndexOf(n.Inputs, g.InputTensor) >= 0).Select(n => n.Output).ToHashSet();
        var sigmoids = g.Nodes.Where(n => n.Kind == OpKind.Sigmoid).Select(n => n.Output).ToHashSet();
        var tensors = g.Tensors.Select((t, i) =>
            i == g.InputTensor || first.Contains(i) || i == g.LogitsTensor || i == g.OutputTensor ? t
            : new TensorSpec
            {
                Name = t.Name, Height = t.Height, Width = t.Width, Channels = t.Channels, Type = t.Type, ZeroPoint = 0,
                // 16 levels over about the real range the 256 levels covered; gates in [0, 15/16].
                Scale = sigmoids.Contains(i) ? 1.0 / 16 : Math.Pow(2, Math.Round(Math.Log2(16 * t.Scale))),
            }).ToArray();
        var nodes = g.Nodes.Select(n =>
        {
            bool isFirst = first.Contains(n.Output);
            bool isLast = n.Output == g.LogitsTensor || n.Output == g.OutputTensor;
            double[]? scales = n.WeightScales?.Select(s => Math.Pow(2, Math.Round(Math.Log2(isFirst ? s : s * 16)))).ToArray();
            int[]? bias = n.Bias;
            if (bias is not null && scales is not null)
            {
                // Keep each bias's real value: it is stored in units of input scale × weight scale, and both changed.
                double oldIn = g.Tensors[n.Inputs[0]].Scale, newIn = tensors[n.Inputs[0]].Scale;
                bias = bias.Select((b, c) => (int)Math.Round(b * oldIn * n.WeightScales![c % n.WeightScales.Length] / (newIn * scales[c % scales.Length]))).ToArray();
            }
            return new Node
            {
                Name = n.Name, Kind = n.Kind, Inputs = n.Inputs, Output = n.Output,
                KernelHeight = n.KernelHeight, KernelWidth = n.KernelWidth, StrideHeight = n.StrideHeight, StrideWidth = n.StrideWidth, Padding = n.Padding,
                Weights = n.Weights is null || isFirst ? n.Weights : n.Weights.Select(w => (sbyte)Math.Clamp(w / 16, -8, 7)).ToArray(),
                WeightScales = scales,
                Bias = bias,
                ClampMin = isFirst || isLast ? n.ClampMin : 0,
                ClampMax = isFirst || isLast ? n.ClampMax : 15,
                Table = n.Table is null ? null : SigmoidTable(tensors[n.Inputs[0]].Scale, tensors[n.Output].Scale),
                TimeSteps = n.TimeSteps, Thresholds = n.Thresholds, Reparameterisation = n.Reparameterisation, Kernel = n.Kernel,
            };
        }).ToArray();
        var graph = new ModelGraph { Tensors = tensors, Nodes = nodes, InputTensor = g.InputTensor, LogitsTensor = g.LogitsTensor, OutputTensor = g.OutputTensor };
        var package = Wrap(graph, $"akd1000-shaped-{seed}", inputSize, inputSize, 3, graph.Tensors[g.LogitsTensor].Scale * 64, QuantizationProfile.Akd1000);
        PackageValidator.Validate(package);
        return package;
    }

    private static sbyte[] SigmoidTable(double inScale, double outScale) =>
        Enumerable.Range(0, 256).Select(i => (sbyte)Math.Clamp(Math.Round(1 / (1 + Math.Exp(-inScale * (i - 128))) / outScale, MidpointRounding.AwayFromZero), 0, 15)).ToArray();

    /// <summary>Wraps a graph in a package with a complete manifest (classes, input, profile, layer table, calibration).</summary>
    public static ModelPackage Wrap(ModelGraph graph, string id, int h, int w, int c, double beta,
        QuantizationProfile profile = QuantizationProfile.Paper8)
    {
        var readout = graph.Nodes.LastOrDefault(n => n.Kind == OpKind.SpikingReadout);
        int classes = graph.Tensors[graph.LogitsTensor].Length;
        var names = classes == Classes.Count ? Classes.Codes.ToArray() : Enumerable.Range(0, classes).Select(k => $"class{k}").ToArray();
        return new ModelPackage
        {
            Graph = graph,
            Manifest = new ModelManifest
            {
                ModelId = id,
                Version = "0.0.0-test",
                CreatedUtc = "2026-01-01T00:00:00Z",
                Classes = names,
                Input = new InputSpec { Height = h, Width = w, Channels = c },
                Profile = profile,
                Layers = graph.Nodes.Select(n => new LayerRecord
                {
                    Name = n.Name, Op = n.Kind.ToString(), Scale = graph.Tensors[n.Output].Scale, ZeroPoint = graph.Tensors[n.Output].ZeroPoint,
                    Reparameterisation = n.Reparameterisation, Kernel = n.Kernel,
                }).ToArray(),
                ConversionSuccessRate = 1.0,
                Calibration = new Calibration
                {
                    ReadoutWindow = readout?.TimeSteps ?? 16,
                    Thresholds = readout?.Thresholds ?? [],
                    Beta = beta,
                    StepWeights = [],
                    TilingTau = 0.5,
                    ReferralThreshold = 0.5,
                    SaliencyFlatCv = 0.15,
                },
                Provenance = new Dictionary<string, string> { ["source"] = "TestGraphs", ["weights"] = "random" },
            },
        };
    }

    /// <summary>A deterministic random quantized input for a package.</summary>
    public static sbyte[] RandomInput(ModelPackage package, int seed)
    {
        var spec = package.Graph.Tensors[package.Graph.InputTensor];
        var rng = new Random(seed);
        var x = new sbyte[spec.Length];
        for (int i = 0; i < x.Length; i++) x[i] = (sbyte)rng.Next(-128, 128);
        return x;
    }
}
