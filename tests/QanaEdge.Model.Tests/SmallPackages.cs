using QanaEdge.Model;
using QanaEdge.Model.Graph;
using QanaEdge.Model.Packaging;

namespace QanaEdge.Model.Tests;

/// <summary>
/// A small hand-made package that uses every operator once or more (8×8×3 input, 7 logits, spiking
/// readout). Weights come from a seeded generator so that tests are deterministic. Also linked into the
/// CLI tests.
/// </summary>
public static class SmallPackages
{
    public const int InputSize = 8;

    public static ModelPackage Build(int seed = 1, QuantizationProfile profile = QuantizationProfile.Paper8)
    {
        var rng = new Random(seed);
        var tensors = new List<TensorSpec>();
        var nodes = new List<Node>();
        int T(string name, int h, int w, int c, double scale, int zp = 0, DataType type = DataType.Int8)
        {
            tensors.Add(new TensorSpec { Name = name, Height = h, Width = w, Channels = c, Scale = scale, ZeroPoint = zp, Type = type });
            return tensors.Count - 1;
        }
        sbyte[] W(int n) { var w = new sbyte[n]; for (int i = 0; i < n; i++) w[i] = (sbyte)rng.Next(-127, 128); return w; }
        int[] B(int n) { var b = new int[n]; for (int i = 0; i < n; i++) b[i] = rng.Next(-2000, 2000); return b; }
        double[] S(int n) { var s = new double[n]; for (int i = 0; i < n; i++) s[i] = 0.001 + rng.NextDouble() * 0.01; return s; }

        int input = T("input", InputSize, InputSize, 3, 1.0 / 255, -128);
        int t1 = T("stem", 8, 8, 4, 6.0 / 255, -128);
        nodes.Add(new Node { Name = "stem", Kind = OpKind.Conv2D, Inputs = [input], Output = t1, KernelHeight = 3, KernelWidth = 3,
            Weights = W(4 * 3 * 3 * 3), WeightScales = S(4), Bias = B(4), ClampMin = -128, ClampMax = 127,
            Reparameterisation = "bn-fold", Kernel = "conv2d-3x3-s1" });
        int t2 = T("dw", 4, 4, 4, 0.05, -3);
        nodes.Add(new Node { Name = "dw", Kind = OpKind.DepthwiseConv2D, Inputs = [t1], Output = t2, KernelHeight = 3, KernelWidth = 3,
            StrideHeight = 2, StrideWidth = 2, Weights = W(3 * 3 * 4), WeightScales = S(1), Bias = B(4), ClampMin = -3, ClampMax = 117,
            Kernel = "dw-3x3-s2" });
        int t3 = T("pw", 4, 4, 4, 0.04, 5);
        nodes.Add(new Node { Name = "pw", Kind = OpKind.PointwiseConv2D, Inputs = [t2], Output = t3, Weights = W(4 * 4), WeightScales = S(4), Bias = B(4), Kernel = "gemm-pw" });
        int t4 = T("concat", 4, 4, 8, 0.05, 0);
        nodes.Add(new Node { Name = "concat", Kind = OpKind.Concat, Inputs = [t2, t3], Output = t4 });
        int t5 = T("sigmoid", 4, 4, 8, 1.0 / 256, -128);
        var table = new sbyte[256];
        for (int i = 0; i < 256; i++)
        {
            double x = 0.05 * (i - 128);
            table[i] = (sbyte)Math.Clamp(Math.Round(1 / (1 + Math.Exp(-x)) * 256, MidpointRounding.AwayFromZero) - 128, -128, 127);
        }
        nodes.Add(new Node { Name = "sigmoid", Kind = OpKind.Sigmoid, Inputs = [t4], Output = t5, Table = table });
        int t6 = T("gate", 4, 4, 8, 0.03, 0);
        nodes.Add(new Node { Name = "gate", Kind = OpKind.Mul, Inputs = [t4, t5], Output = t6 });
        int t7 = T("proj", 4, 4, 8, 0.03, 1);
        nodes.Add(new Node { Name = "proj", Kind = OpKind.PointwiseConv2D, Inputs = [t6], Output = t7, Weights = W(8 * 8), WeightScales = S(8), Bias = B(8) });
        int t8 = T("add", 4, 4, 8, 0.06, 0);
        nodes.Add(new Node { Name = "add", Kind = OpKind.Add, Inputs = [t6, t7], Output = t8 });
        int t9 = T("gap", 1, 1, 8, 0.06, 0);
        nodes.Add(new Node { Name = "gap", Kind = OpKind.GlobalAvgPool, Inputs = [t8], Output = t9, Reparameterisation = "gap-scale-fold" });
        int t10 = T("relu", 1, 1, 8, 0.06, 0);
        nodes.Add(new Node { Name = "relu", Kind = OpKind.Clamp, Inputs = [t9], Output = t10, ClampMin = 0, ClampMax = 127 });
        int t11 = T("se", 4, 4, 8, 0.05, 0);
        nodes.Add(new Node { Name = "se", Kind = OpKind.Mul, Inputs = [t8, t10], Output = t11 });
        int t12 = T("flatten", 1, 1, 128, 0.05, 0);
        nodes.Add(new Node { Name = "flatten", Kind = OpKind.Reshape, Inputs = [t11], Output = t12 });
        int t13 = T("logits", 1, 1, 7, 0.1, -10);
        nodes.Add(new Node { Name = "head", Kind = OpKind.Dense, Inputs = [t12], Output = t13, Weights = W(7 * 128), WeightScales = S(7), Bias = B(7), Kernel = "gemm-dense" });
        int t14 = T("spikes", 1, 1, 7, 1.0, 0, DataType.Int32);
        nodes.Add(new Node { Name = "readout", Kind = OpKind.SpikingReadout, Inputs = [t13], Output = t14, TimeSteps = 16, Thresholds = [64, 64, 70, 64, 60, 64, 80] });

        var graph = new ModelGraph { Tensors = tensors.ToArray(), Nodes = nodes.ToArray(), InputTensor = input, LogitsTensor = t13, OutputTensor = t14 };
        var golden = new sbyte[InputSize * InputSize * 3];
        for (int i = 0; i < golden.Length; i++) golden[i] = (sbyte)rng.Next(-128, 128);
        var manifest = new ModelManifest
        {
            ModelId = "qana-small-test",
            Version = "1.0." + seed,
            CreatedUtc = "2026-11-27T12:00:00Z",
            Classes = Classes.Codes.ToArray(),
            Input = new InputSpec { Height = InputSize, Width = InputSize, ColorGains = [1.05f, 1f, 0.95f] },
            Profile = profile,
            Layers = nodes.Select(n => new LayerRecord
            {
                Name = n.Name, Op = OpNames.Of(n.Kind), Scale = tensors[n.Output].Scale, ZeroPoint = tensors[n.Output].ZeroPoint,
                Reparameterisation = n.Reparameterisation, Kernel = n.Kernel,
            }).ToArray(),
            ConversionSuccessRate = 1.0,
            Metrics = new() { ["test_top1"] = 0.5, ["test_macro_f1"] = 0.25 },
            Calibration = new Calibration { ReadoutWindow = 16, Thresholds = [64, 64, 70, 64, 60, 64, 80], Beta = 0.1, TilingTau = 0.4, ReferralThreshold = 0.3 },
            Golden = [new GoldenVector { Input = golden, ExpectedLogits = [1, -2, 3, -4, 5, -6, 7] }],
            Provenance = new() { ["seed"] = seed.ToString(System.Globalization.CultureInfo.InvariantCulture) },
        };
        return new ModelPackage { Manifest = manifest, Graph = graph };
    }

    /// <summary>A readout update for <see cref="Build"/>'s model: only the head and the readout.</summary>
    public static ModelPackage ReadoutUpdate(int seed = 2)
    {
        var rng = new Random(seed);
        var w = new sbyte[7 * 128];
        for (int i = 0; i < w.Length; i++) w[i] = (sbyte)rng.Next(-127, 128);
        var graph = new ModelGraph
        {
            Tensors =
            [
                new TensorSpec { Name = "flatten", Height = 1, Width = 1, Channels = 128, Scale = 0.05, ZeroPoint = 0 },
                new TensorSpec { Name = "logits", Height = 1, Width = 1, Channels = 7, Scale = 0.1, ZeroPoint = -10 },
                new TensorSpec { Name = "spikes", Height = 1, Width = 1, Channels = 7, Scale = 1, ZeroPoint = 0, Type = DataType.Int32 },
            ],
            Nodes =
            [
                new Node { Name = "head", Kind = OpKind.Dense, Inputs = [0], Output = 1, Weights = w, WeightScales = [0.004], Bias = new int[7] },
                new Node { Name = "readout", Kind = OpKind.SpikingReadout, Inputs = [1], Output = 2, TimeSteps = 16, Thresholds = [64, 64, 64, 64, 64, 64, 64] },
            ],
            InputTensor = 0, LogitsTensor = 1, OutputTensor = 2,
        };
        var manifest = new ModelManifest
        {
            ModelId = "qana-small-test-readout",
            Version = "1.0.1-r1",
            Kind = PackageKind.ReadoutUpdate,
            BaseModelId = "qana-small-test",
            BaseModelVersion = "1.0.1",
            Classes = Classes.Codes.ToArray(),
            Input = new InputSpec { Height = InputSize, Width = InputSize },
            Profile = QuantizationProfile.Paper8,
        };
        return new ModelPackage { Manifest = manifest, Graph = graph };
    }
}
