using QanaEdge.Model.Graph;
using QanaEdge.Model.Packaging;
using QanaEdge.Runtime;
using QanaEdge.TestSupport;

namespace QanaEdge.Runtime.Tests;

public class EngineTests
{
    private static readonly EngineOptions KeepAll = new() { ReuseBuffers = false };

    private static void AssertAllTensorsEqual(ModelPackage pkg, IntegerEngine expected, IntegerEngine actual, string context)
    {
        var g = pkg.Graph;
        for (int t = 0; t < g.Tensors.Length; t++)
        {
            if (g.Tensors[t].Type != DataType.Int8) continue;
            var a = expected.Activation(t);
            var b = actual.Activation(t);
            if (!a.SequenceEqual(b))
            {
                int i = 0;
                while (a[i] == b[i]) i++;
                var producer = g.Nodes.FirstOrDefault(n => n.Output == t);
                Assert.Fail($"{context}: tensor {g.Tensors[t]} (from {producer?.Name} {producer?.Kind}) differs at {i}: {a[i]} vs {b[i]}");
            }
        }
        Assert.True(expected.SpikeCounts.SequenceEqual(actual.SpikeCounts), $"{context}: spike counts differ");
        Assert.Equal(expected.Events, actual.Events);
    }

    [Fact]
    public void Optimized_is_bit_exact_to_reference_on_random_graphs()
    {
        for (int seed = 0; seed < 150; seed++)
        {
            var pkg = TestGraphs.RandomGraph(seed);
            using var reference = IntegerEngine.Create(pkg, KernelMode.Reference, KeepAll);
            using var optimized = IntegerEngine.Create(pkg, KernelMode.Optimized, KeepAll);
            using var reusing = IntegerEngine.Create(pkg);   // its tensors share bytes: only the outputs are comparable
            for (int k = 0; k < 3; k++)
            {
                var input = TestGraphs.RandomInput(pkg, seed * 10 + k);
                if (k == 2) Array.Fill(input, (sbyte)-128);        // an all-zero (black) image: no events at the input
                reference.Run(input);
                optimized.Run(input);
                reusing.Run(input);
                AssertAllTensorsEqual(pkg, reference, optimized, $"seed {seed} input {k}");
                Assert.True(reference.Logits.SequenceEqual(reusing.Logits), $"seed {seed} input {k}: logits differ with buffer reuse");
            }
        }
    }

    /// <summary>
    /// With buffer reuse the bytes after a tensor can belong to one still to be read. A 16-channel concat copies
    /// pixels with 32-byte stores; here the tensor placed after it (A) is read by the add that follows.
    /// </summary>
    [Fact]
    public void A_narrow_concat_leaves_the_buffer_after_it_alone()
    {
        var b = new GraphBuilder(7);
        int x = b.Input(8, 8, 8);
        int wide = b.Weighted("wide", OpKind.PointwiseConv2D, x, 16);
        int kept = b.Weighted("kept", OpKind.PointwiseConv2D, x, 8);
        int left = b.Weighted("left", OpKind.PointwiseConv2D, wide, 8);
        int right = b.Weighted("right", OpKind.PointwiseConv2D, wide, 8);
        int both = b.Concat("both", [left, right]);
        int sum = b.Add("sum", kept, left);
        int logits = b.Weighted("head", OpKind.Dense, b.Flatten("flatten", b.Add("join", sum, b.Weighted("narrow", OpKind.PointwiseConv2D, both, 8))), 7);
        int counts = b.Readout("readout", logits, 8, [40, 40, 40, 40, 40, 40, 40]);
        var pkg = TestGraphs.Wrap(b.Build(x, logits, counts), "narrow-concat", 8, 8, 8, 1.0 / 8);
        using var reference = IntegerEngine.Create(pkg, KernelMode.Reference, KeepAll);
        using var optimized = IntegerEngine.Create(pkg, KernelMode.Optimized);   // with buffer reuse
        for (int seed = 0; seed < 5; seed++)
        {
            var input = TestGraphs.RandomInput(pkg, seed);
            reference.Run(input);
            optimized.Run(input);
            Assert.Equal(reference.Logits.ToArray(), optimized.Logits.ToArray());
            Assert.Equal(reference.SpikeCounts.ToArray(), optimized.SpikeCounts.ToArray());
        }
    }

    /// <summary>
    /// A package has at most MaxClasses logits, but an engine also runs graphs built in code. The softmax of a
    /// graph without a readout put its scores on the stack whatever their number: 1.5 M logits took 12 MB of
    /// stack, an overflow no caller can catch.
    /// </summary>
    [Fact]
    public void Probabilities_of_more_logits_than_a_package_may_have_do_not_overflow_the_stack()
    {
        const int classes = 1_500_000;
        var b = new GraphBuilder(3);
        int x = b.Input(1, 1, classes);
        int logits = b.Clamp("logits", x, -128, 127);
        var pkg = TestGraphs.Wrap(b.Build(x, logits, logits), "many-logits", 1, 1, classes, 1.0);
        foreach (KernelMode mode in new[] { KernelMode.Reference, KernelMode.Optimized })
        {
            using var engine = IntegerEngine.Create(pkg, mode);
            engine.Run(TestGraphs.RandomInput(pkg, 1));
            var p = new float[classes];
            engine.GetProbabilities(p);
            Assert.Equal(1.0, p.Sum(v => (double)v), 3);
        }
    }

    [Fact]
    public void Optimized_is_bit_exact_to_reference_on_larger_random_graphs()
    {
        for (int seed = 1000; seed < 1012; seed++)
        {
            var pkg = TestGraphs.RandomGraph(seed, maxSize: 23, maxChannels: 70);
            using var reference = IntegerEngine.Create(pkg, KernelMode.Reference, KeepAll);
            using var optimized = IntegerEngine.Create(pkg, KernelMode.Optimized, KeepAll);
            var input = TestGraphs.RandomInput(pkg, seed);
            reference.Run(input);
            optimized.Run(input);
            AssertAllTensorsEqual(pkg, reference, optimized, $"seed {seed}");
        }
    }

    /// <summary>
    /// The quad GEMMs (AVX-VNNI, sdot) fold the zero point into the bias and pad with it. Every image input and ReLU6
    /// output has zero point −128, where the folded byte is 0 on x64, so padding with 0 or skipping quads of zero
    /// bytes would pass the graphs above: here padded and wide GEMMs read zero points away from −128 (the top of the
    /// byte included), from inputs mostly at the zero point as well as dense ones.
    /// </summary>
    [Theory]
    [InlineData(23)]
    [InlineData(-100)]
    [InlineData(127)]
    public void Optimized_GEMMs_are_bit_exact_with_the_zero_point_away_from_minus_128(int zeroPoint)
    {
        var b = new GraphBuilder(zeroPoint);
        int input = b.Input(7, 9, 6, zeroPoint);
        int conv = b.Weighted("conv", OpKind.Conv2D, input, 100, 3, 1, Padding.Same, zeroPoint: zeroPoint);
        int strided = b.Weighted("strided", OpKind.Conv2D, conv, 70, 3, 2, Padding.Same);
        b.Weighted("pw", OpKind.PointwiseConv2D, input, 130);   // a wide GEMM off the input; every tensor is compared below
        int logits = b.Weighted("head", OpKind.Dense, b.Flatten("flatten", strided), 7);
        int counts = b.Readout("readout", logits, 8, [40, 40, 40, 40, 40, 40, 40]);
        var graph = b.Build(input, logits, counts);
        var pkg = TestGraphs.Wrap(graph, "zero-points", 7, 9, 6, 1.0 / 8);
        using var reference = IntegerEngine.Create(pkg, KernelMode.Reference, KeepAll);
        using var optimized = IntegerEngine.Create(pkg, KernelMode.Optimized, KeepAll);
        var rng = new Random(zeroPoint);
        for (int k = 0; k < 4; k++)
        {
            // Mostly at the zero point (85 %, then 60 %, then all of it), then a dense random input.
            double atZero = k switch { 0 => 0.85, 1 => 0.6, 2 => 1.0, _ => 0.0 };
            var x = new sbyte[7 * 9 * 6];
            for (int i = 0; i < x.Length; i++) x[i] = rng.NextDouble() < atZero ? (sbyte)zeroPoint : (sbyte)rng.Next(-128, 128);
            reference.Run(x);
            optimized.Run(x);
            AssertAllTensorsEqual(pkg, reference, optimized, $"zero point {zeroPoint}, input {k}");
        }
    }

    [Fact]
    public void Optimized_is_bit_exact_to_reference_on_the_qana_shaped_network()
    {
        foreach (var (seed, size) in new[] { (1, 16), (2, 24), (3, 64) })
        {
            var pkg = TestGraphs.QanaShaped(seed, size);
            using var reference = IntegerEngine.Create(pkg, KernelMode.Reference, KeepAll);
            using var optimized = IntegerEngine.Create(pkg, KernelMode.Optimized);   // with buffer reuse
            var input = TestGraphs.RandomInput(pkg, seed);
            reference.Run(input);
            optimized.Run(input);
            AssertAllTensorsEqual(pkg, reference, optimized, $"qana {size}");
        }
    }

    [Fact]
    public void Buffer_reuse_shrinks_the_arena_and_activations_stay_readable()
    {
        var pkg = TestGraphs.QanaShaped(5, 32);
        using var shared = IntegerEngine.Create(pkg);
        using var separate = IntegerEngine.Create(pkg, KernelMode.Optimized, KeepAll);
        Assert.True(shared.ArenaBytes < separate.ArenaBytes / 2, $"{shared.ArenaBytes} vs {separate.ArenaBytes}");
        var input = TestGraphs.RandomInput(pkg, 9);
        shared.Run(input);
        separate.Run(input);
        AssertAllTensorsEqual(pkg, separate, shared, "reuse");
    }

    [Fact]
    public void Events_count_inputs_different_from_their_zero_point()
    {
        var pkg = TestGraphs.QanaShaped(4, 16);
        using var engine = IntegerEngine.Create(pkg, KernelMode.Optimized, KeepAll);
        var input = TestGraphs.RandomInput(pkg, 3);
        engine.Run(input);
        var g = pkg.Graph;
        long total = 0;
        for (int i = 0; i < g.Nodes.Length; i++)
        {
            long expected = 0;
            foreach (int t in g.Nodes[i].Inputs)
            {
                int zp = g.Tensors[t].ZeroPoint;
                foreach (var q in engine.Activation(t)) if (q != zp) expected++;
            }
            Assert.Equal(expected, engine.LayerEvents[i]);
            total += expected;
        }
        Assert.Equal(total, engine.Events);
        Assert.True(engine.Events > 0);
    }

    [Fact]
    public void Runs_allocate_nothing_after_warm_up()
    {
        var pkg = TestGraphs.QanaShaped(6, 64);
        using var engine = IntegerEngine.Create(pkg);
        var input = TestGraphs.RandomInput(pkg, 1);
        Assert.Equal(0, EngineChecks.AllocatedBytesAfterWarmUp(engine, input, runs: 3));
    }

    [Fact]
    public void Probabilities_sum_to_one_and_follow_the_counts()
    {
        var pkg = TestGraphs.QanaShaped(8, 16);
        using var engine = IntegerEngine.Create(pkg);
        engine.Run(TestGraphs.RandomInput(pkg, 2));
        var p = new float[7];
        engine.GetProbabilities(p);
        Assert.Equal(1.0, p.Sum(), 5);
        var counts = engine.SpikeCounts.ToArray();
        int best = Array.IndexOf(counts, counts.Max());
        Assert.Equal(p.Max(), p[best]);
    }

    [Fact]
    public void Bad_graphs_and_inputs_give_one_clear_error()
    {
        var pkg = TestGraphs.RandomGraph(3);
        var g = pkg.Graph;
        var nodes = g.Nodes.ToArray();
        var stem = nodes[0];
        nodes[0] = new Node { Name = stem.Name, Kind = stem.Kind, Inputs = stem.Inputs, Output = stem.Output, KernelHeight = stem.KernelHeight,
            KernelWidth = stem.KernelWidth, StrideHeight = stem.StrideHeight, StrideWidth = stem.StrideWidth, Padding = stem.Padding,
            Weights = stem.Weights![..^1], WeightScales = stem.WeightScales, Bias = stem.Bias };
        var broken = new ModelPackage { Manifest = pkg.Manifest, Graph = new ModelGraph { Tensors = g.Tensors, Nodes = nodes,
            InputTensor = g.InputTensor, LogitsTensor = g.LogitsTensor, OutputTensor = g.OutputTensor } };
        var ex = Assert.Throws<InvalidGraphException>(() => IntegerEngine.Create(broken));
        Assert.Contains("stem", ex.Message);

        using var engine = IntegerEngine.Create(pkg);
        Assert.Throws<ArgumentException>(() => engine.Run(new sbyte[3]));
        Assert.Throws<InvalidOperationException>(() => engine.GetProbabilities(new float[7]));
    }
    /// <summary>
    /// The validation and the prepare step decide alike on the integer parameters: a graph the validation accepts is
    /// one the engine prepares, with both kernel sets, and the engine refuses only what the validation refuses. The
    /// validation used to leave multipliers and accumulator bounds to the engine, so such a package loaded (and a
    /// signed update passed its checks) and failed only when an engine was made from it.
    /// </summary>
    [Fact]
    public void The_engine_prepares_every_graph_the_validation_accepts_at_the_integer_limits()
    {
        static ModelPackage Dense(double outScale, int bias) => TestGraphs.Wrap(new ModelGraph
            {
                Tensors =
                [
                    new TensorSpec { Name = "x", Height = 1, Width = 1, Channels = 2, Scale = 1, ZeroPoint = 0 },
                    new TensorSpec { Name = "y", Height = 1, Width = 1, Channels = 1, Scale = outScale, ZeroPoint = 0 },
                ],
                Nodes = [new Node { Name = "w", Kind = OpKind.Dense, Inputs = [0], Output = 1, Weights = [127, -128], WeightScales = [1], Bias = [bias] }],
                InputTensor = 0, LogitsTensor = 1, OutputTensor = 1,
            }, "integer-limits", 1, 1, 2, beta: 1);
        double edge = Math.Pow(2, 30);
        var cases = new List<ModelPackage>();
        foreach (double m in new[] { edge * (1 - Math.Pow(2, -31)), edge * (1 - Math.Pow(2, -32)), edge * (1 - Math.Pow(2, -33)), edge, edge * 2, 1e300 })
            cases.Add(Dense(1 / m, 0));
        int taps = 255 * (127 + 128);
        foreach (int bias in new[] { int.MaxValue - taps - 1, int.MaxValue - taps, -(int.MaxValue - taps - 1), -(int.MaxValue - taps), int.MinValue })
            cases.Add(Dense(1e-3, bias));
        int accepted = 0;
        foreach (var pkg in cases)
        {
            bool valid;
            try { GraphValidator.Validate(pkg.Graph); valid = true; accepted++; }
            catch (PackageFormatException) { valid = false; }
            foreach (var mode in new[] { KernelMode.Reference, KernelMode.Optimized })
            {
                bool prepared;
                try { IntegerEngine.Create(pkg, mode).Dispose(); prepared = true; }
                catch (InvalidGraphException) { prepared = false; }
                Assert.True(valid == prepared, $"{mode}, scale {pkg.Graph.Tensors[1].Scale:R}, bias {pkg.Graph.Nodes[0].Bias![0]}: valid {valid}, prepared {prepared}");
            }
        }
        Assert.Equal(3, accepted);   // 2^30·(1 − 2^−31), and the largest bias of either sign
    }
}
