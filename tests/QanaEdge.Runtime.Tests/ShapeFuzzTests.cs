using QanaEdge.Model.Graph;
using QanaEdge.Model.Packaging;
using QanaEdge.Runtime;
using QanaEdge.TestSupport;

namespace QanaEdge.Runtime.Tests;

/// <summary>
/// Single operators on random shapes, compared with the reference kernels: the random graphs keep their channel
/// counts under 43, their depthwise windows square and at most 3×3 and their input zero points near −128, so the kernels' tails
/// (channel counts around multiples of 8, 16, 32, 48 and 64), rectangular and large windows, strides up to 3,
/// 1×1 and 1×N tensors and zero points anywhere in the byte get checked here. 600 single layers and 200 chains
/// take 5–7 s per kernel cap. A depthwise error planted only for windows wider than 3 fails here and not in
/// <see cref="EngineTests"/>.
/// </summary>
public class ShapeFuzzTests
{
    private static readonly EngineOptions KeepAll = new() { ReuseBuffers = false };

    private static TensorSpec T(string name, int h, int w, int c, double scale, int zp) =>
        new() { Name = name, Height = h, Width = w, Channels = c, Scale = scale, ZeroPoint = zp };

    private static int Channels(Random r) => r.Next(4) switch
    {
        0 => r.Next(1, 9),
        1 => r.Next(9, 40),
        2 => new[] { 7, 8, 9, 15, 16, 17, 23, 24, 25, 31, 32, 33, 47, 48, 49, 63, 64, 65 }[r.Next(18)],
        _ => r.Next(40, 140),
    };

    private static sbyte[] Bytes(Random r, int n, int amplitude)
    {
        var w = new sbyte[n];
        for (int i = 0; i < n; i++) w[i] = (sbyte)Math.Clamp(r.Next(-amplitude, amplitude + 1), -128, 127);
        return w;
    }

    /// <summary>One weighted node (Conv2D, depthwise, pointwise or Dense) on an input of random shape and quantization.</summary>
    private static ModelPackage Weighted(int seed)
    {
        var r = new Random(seed);
        var kind = (OpKind)new[] { OpKind.Conv2D, OpKind.DepthwiseConv2D, OpKind.PointwiseConv2D, OpKind.Dense }[r.Next(4)];
        int h = r.Next(3) == 0 ? 1 : r.Next(1, 12), w = r.Next(3) == 0 ? 1 : r.Next(1, 12);
        int cin = kind == OpKind.Conv2D ? Channels(r) % 40 + 1 : Channels(r);
        int kh = r.Next(4) == 0 ? 3 : r.Next(1, 6), kw = r.Next(4) == 0 ? 3 : r.Next(1, 6);
        if (r.Next(3) == 0) kw = kh;
        int sh = r.Next(1, 4), sw = r.Next(1, 4);
        var padding = r.Next(2) == 0 ? Padding.Same : Padding.Valid;
        if (kind is OpKind.PointwiseConv2D or OpKind.Dense) { kh = kw = sh = sw = 1; padding = Padding.Same; }
        if (padding == Padding.Valid) { h = Math.Max(h, kh); w = Math.Max(w, kw); }
        int zin = r.Next(3) == 0 ? -128 : r.Next(-128, 128);
        var x = T("x", h, w, cin, 0.02 * (0.5 + r.NextDouble()), zin);
        int hout, wout, cout;
        switch (kind)
        {
            case OpKind.Conv2D:
            case OpKind.DepthwiseConv2D:
                hout = GraphBuilder.Out(h, kh, sh, padding); wout = GraphBuilder.Out(w, kw, sw, padding);
                cout = kind == OpKind.DepthwiseConv2D ? cin : Channels(r);
                break;
            case OpKind.PointwiseConv2D: hout = h; wout = w; cout = Channels(r); break;
            default: hout = 1; wout = 1; cout = Channels(r); cin = x.Length; break;
        }
        int taps = kind switch { OpKind.Conv2D => kh * kw * cin, OpKind.DepthwiseConv2D => kh * kw, _ => cin };
        int wLen = kind == OpKind.DepthwiseConv2D ? taps * cout : taps * cout;
        int amplitude = r.Next(3) switch { 0 => 128, 1 => 20, _ => r.Next(1, 128) };
        var weights = Bytes(r, wLen, amplitude);
        if (r.Next(4) == 0) for (int i = 0; i < wLen; i += r.Next(1, 4)) weights[i] = 0;
        bool perChannel = r.Next(2) == 0;
        var ws = Enumerable.Range(0, perChannel ? cout : 1).Select(_ => 0.004 * Math.Pow(4, r.NextDouble() * 2 - 1)).ToArray();
        var bias = Enumerable.Range(0, cout).Select(_ => r.Next(-20000, 20001)).ToArray();
        // An output scale around the accumulator's spread, sometimes far smaller (multipliers above 1) or larger.
        double spread = x.Scale * ws.Average() * 100 * Math.Sqrt(taps);
        double outScale = spread * Math.Pow(2, r.Next(3) switch { 0 => r.Next(-12, 1), 1 => r.Next(0, 8), _ => 0 });
        var y = T("y", hout, wout, cout, outScale, r.Next(-128, 128));
        int lo = r.Next(3) == 0 ? r.Next(-128, 0) : -128, hi = r.Next(3) == 0 ? r.Next(lo, 128) : 127;
        var node = new Node
        {
            Name = $"{kind}-{seed}", Kind = kind, Inputs = [0], Output = 1,
            KernelHeight = kh, KernelWidth = kw, StrideHeight = sh, StrideWidth = sw, Padding = padding,
            Weights = weights, WeightScales = ws, Bias = bias, ClampMin = lo, ClampMax = hi,
        };
        var graph = new ModelGraph { Tensors = [x, y], Nodes = [node], InputTensor = 0, LogitsTensor = 1, OutputTensor = 1 };
        return TestGraphs.Wrap(graph, $"shape-{seed}", h, w, cin, 1.0);
    }

    private static void AssertSame(ModelPackage pkg, int seed, int inputs)
    {
        using var reference = IntegerEngine.Create(pkg, KernelMode.Reference, KeepAll);
        using var optimized = IntegerEngine.Create(pkg, KernelMode.Optimized, KeepAll);
        var g = pkg.Graph;
        for (int k = 0; k < inputs; k++)
        {
            var input = TestGraphs.RandomInput(pkg, seed * 7 + k);
            var zp = (sbyte)g.Tensors[g.InputTensor].ZeroPoint;
            if (k == 1) for (int i = 0; i < input.Length; i += 2) input[i] = zp;   // half the inputs at the zero point
            if (k == 2) Array.Fill(input, zp);
            if (k == 3) Array.Fill(input, (sbyte)(k % 2 == 0 ? 127 : -128));
            reference.Run(input);
            optimized.Run(input);
            for (int t = 0; t < g.Tensors.Length; t++)
            {
                if (g.Tensors[t].Type != DataType.Int8) continue;
                var a = reference.Activation(t);
                var b = optimized.Activation(t);
                if (a.SequenceEqual(b)) continue;
                int i = 0;
                while (a[i] == b[i]) i++;
                var n = g.Nodes.First(n => n.Output == t);
                Assert.Fail($"seed {seed} input {k}: {n.Kind} {g.Tensors[n.Inputs[0]]} -> {g.Tensors[t]} k {n.KernelHeight}x{n.KernelWidth} " +
                            $"s {n.StrideHeight}x{n.StrideWidth} {n.Padding} ({optimized.Layers[0].Kernel}, isa cap {Kernels.InstructionSets.CapName}) " +
                            $"differs at {i}: {a[i]} vs {b[i]}");
            }
        }
    }

    [Fact]
    public void Weighted_layers_are_bit_exact_on_random_shapes_and_zero_points()
    {
        for (int seed = 0; seed < 600; seed++) AssertSame(Weighted(seed), seed, 4);
    }

    /// <summary>A chain of random operators (every kind, channel counts up to 140, 1×1 and 1×N tensors) ending in a dense head.</summary>
    private static ModelPackage Chain(int seed)
    {
        var b = new GraphBuilder(seed);
        var r = b.Rng;
        int h = r.Next(3) == 0 ? 1 : r.Next(1, 10), w = r.Next(3) == 0 ? 1 : r.Next(1, 10);
        int input = b.Input(h, w, r.Next(1, 6), zeroPoint: r.Next(2) == 0 ? -128 : r.Next(-128, 128));
        int x = input;
        Padding Pad(int k) => r.Next(2) == 0 || Math.Min(b[x].Height, b[x].Width) < k ? Padding.Same : Padding.Valid;
        for (int step = 0; step < 6; step++)
        {
            int k = r.Next(1, 5), kw = r.Next(1, 5);
            var pad = Math.Min(b[x].Height, b[x].Width) < Math.Max(k, kw) ? Padding.Same : Pad(Math.Max(k, kw));
            string n = $"s{step}";
            switch (r.Next(9))
            {
                case 0: x = b.Weighted(n, OpKind.Conv2D, x, Channels(r) % 70 + 1, k, r.Next(1, 4), pad, relu6: r.Next(2) == 0, kw: kw, strideW: r.Next(1, 4), zeroPoint: r.Next(-128, 128)); break;
                case 1: x = b.Weighted(n, OpKind.DepthwiseConv2D, x, 0, k, r.Next(1, 4), pad, relu6: r.Next(2) == 0, kw: r.Next(2) == 0 ? k : kw, strideW: r.Next(1, 4), zeroPoint: r.Next(-128, 128)); break;
                case 2: x = b.Weighted(n, OpKind.PointwiseConv2D, x, Channels(r), zeroPoint: r.Next(-128, 128)); break;
                case 3:
                {
                    int other = b.Weighted(n + ".pw", OpKind.PointwiseConv2D, x, Channels(r), zeroPoint: r.Next(-128, 128));
                    int[] parts = r.Next(3) switch { 0 => [x, other], 1 => [other, x, other], _ => [x] };
                    x = b.Concat(n, parts, relu6: r.Next(2) == 0, sameQuantization: r.Next(3) == 0);
                    break;
                }
                case 4: x = b.Add(n, x, b.Weighted(n + ".pw", OpKind.PointwiseConv2D, x, b[x].Channels, zeroPoint: r.Next(-128, 128)), relu6: r.Next(2) == 0); break;
                case 5:
                {
                    int gate = r.Next(3) switch
                    {
                        0 => b.Sigmoid(n + ".sig", b.Weighted(n + ".pw", OpKind.PointwiseConv2D, x, b[x].Channels)),
                        1 => b.Sigmoid(n + ".sig", b.Weighted(n + ".pw", OpKind.PointwiseConv2D, x, 1)),
                        _ => b.Sigmoid(n + ".sig", b.Weighted(n + ".fc", OpKind.Dense, b.Gap(n + ".gap", x), b[x].Channels)),
                    };
                    x = b.Mul(n, x, gate, relu6: r.Next(2) == 0);
                    break;
                }
                case 6: { int lo = r.Next(-128, 0); x = b.Clamp(n, x, lo, r.Next(lo, 128), rescale: r.Next(2) == 0); break; }
                case 7: x = b.Sigmoid(n, x); break;
                default: x = b.Flatten(n, x); break;
            }
        }
        int logits = b.Weighted("head", OpKind.Dense, b.Flatten("flatten", x), r.Next(1, 20), perChannel: r.Next(2) == 0);
        int classes = b[logits].Length;
        int counts = b.Readout("readout", logits, r.Next(1, 40), Enumerable.Range(0, classes).Select(_ => r.Next(8, 300)).ToArray());
        return TestGraphs.Wrap(b.Build(input, logits, counts), $"chain-{seed}", h, w, b[input].Channels, 1.0 / 8);
    }

    [Fact]
    public void Chains_of_every_operator_are_bit_exact_on_random_shapes()
    {
        for (int seed = 0; seed < 200; seed++)
        {
            var pkg = Chain(seed);
            AssertSame(pkg, seed, 4);
            // With buffer reuse the tensors share bytes: only the logits and counts are comparable.
            using var reference = IntegerEngine.Create(pkg, KernelMode.Reference, KeepAll);
            using var reusing = IntegerEngine.Create(pkg);
            var input = TestGraphs.RandomInput(pkg, seed);
            reference.Run(input);
            reusing.Run(input);
            Assert.True(reference.Logits.SequenceEqual(reusing.Logits), $"seed {seed}: logits differ with buffer reuse");
            Assert.True(reference.SpikeCounts.SequenceEqual(reusing.SpikeCounts), $"seed {seed}: counts differ with buffer reuse");
        }
    }
}
