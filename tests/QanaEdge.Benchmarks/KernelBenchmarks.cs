using BenchmarkDotNet.Attributes;
using QanaEdge.Model.Graph;
using QanaEdge.Model.Packaging;
using QanaEdge.Runtime;
using QanaEdge.TestSupport;

/// <summary>The main kernels alone, each as a one-node graph at the QANA block-1 size (64×64), reference vs optimized.</summary>
[MemoryDiagnoser]
public class KernelBenchmarks
{
    [Params("stem-conv3x3", "pointwise-48", "depthwise-3x3", "add", "gate-full", "sigmoid")]
    public string Kernel { get; set; } = "";

    [Params(KernelMode.Optimized, KernelMode.Reference)]
    public KernelMode Mode { get; set; }

    private IntegerEngine _engine = null!;
    private sbyte[] _input = [];

    [GlobalSetup]
    public void Setup()
    {
        var b = new GraphBuilder(7);
        int x = b.Input(64, 64, 3);
        int feat = b.Weighted("feat", OpKind.Conv2D, x, 48, 1, relu6: true);   // shared producer, not the measured kernel
        int y = Kernel switch
        {
            "stem-conv3x3" => b.Weighted("k", OpKind.Conv2D, x, 24, 3, 1, Padding.Same, relu6: true),
            "pointwise-48" => b.Weighted("k", OpKind.PointwiseConv2D, feat, 48),
            "depthwise-3x3" => b.Weighted("k", OpKind.DepthwiseConv2D, feat, 0, 3, 1, Padding.Same),
            "add" => b.Add("k", feat, b.Weighted("p", OpKind.PointwiseConv2D, feat, 48)),
            "gate-full" => b.Mul("k", feat, b.Sigmoid("s", feat)),
            _ => b.Sigmoid("k", feat),
        };
        var pkg = TestGraphs.Wrap(b.Build(x, y, y), "kernel", 64, 64, 3, 1.0);
        _engine = IntegerEngine.Create(pkg, Mode, new EngineOptions { CountEvents = false });
        _input = TestGraphs.RandomInput(pkg, 3);
        _engine.Run(_input);
    }

    /// <summary>The whole one-node graph (plus its producer): compare optimized with reference per kernel.</summary>
    [Benchmark]
    public void Run() => _engine.Run(_input);

    [GlobalCleanup]
    public void Cleanup() => _engine.Dispose();
}
