using BenchmarkDotNet.Attributes;
using QanaEdge.Model.Packaging;
using QanaEdge.Runtime;
using QanaEdge.TestSupport;

/// <summary>The whole QANA-shaped graph at 64×64, reference vs optimized kernels.</summary>
[MemoryDiagnoser]
public class EngineBenchmarks
{
    private ModelPackage _pkg = null!;
    private sbyte[] _input = [];
    private IntegerEngine _optimized = null!, _reference = null!;

    [GlobalSetup]
    public void Setup()
    {
        _pkg = TestGraphs.QanaShaped(42, 64);
        _input = TestGraphs.RandomInput(_pkg, 1);
        _optimized = IntegerEngine.Create(_pkg);
        _reference = IntegerEngine.Create(_pkg, KernelMode.Reference);
        _optimized.Run(_input);
        _reference.Run(_input);
    }

    [Benchmark(Baseline = true)]
    public void QanaShaped64_Optimized() => _optimized.Run(_input);

    [Benchmark]
    public void QanaShaped64_Reference() => _reference.Run(_input);

    [GlobalCleanup]
    public void Cleanup()
    {
        _optimized.Dispose();
        _reference.Dispose();
    }
}
