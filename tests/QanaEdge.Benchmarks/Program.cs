using System.Diagnostics;
using BenchmarkDotNet.Running;
using QanaEdge.Runtime;
using QanaEdge.TestSupport;

// `--quick [PACKAGE]`: a plain stopwatch pass over the QANA-shaped graph (or the package given) and its layers (no
// BenchmarkDotNet), for iterating on kernels. Anything else goes to BenchmarkDotNet (`--filter '*'`).
// `--write-package PATH`: the QANA-shaped twin (seed 42, 64×64) as a package file, for `qana bench --model`.
// `--classify [PACKAGE]`: LesionClassifier on decoded HAM10000 JPEGs, one view against the tiling fallback and the
// saliency crop forced on every image: median time and managed bytes per result.
if (args.Length > 0 && args[0] == "--classify")
{
    ClassifyBench.Run(args.Length > 1 ? QanaEdge.Model.Packaging.PackageReader.Load(args[1]) : TestGraphs.QanaShaped(42, 64));
    return;
}
if (args.Length == 2 && args[0] == "--write-package")
{
    QanaEdge.Model.Packaging.PackageWriter.Save(TestGraphs.QanaShaped(42, 64), args[1]);
    Console.WriteLine($"wrote {args[1]}");
    return;
}
if (args.Length > 0 && args[0] == "--quick")
{
    var pkg = args.Length > 1 ? QanaEdge.Model.Packaging.PackageReader.Load(args[1]) : TestGraphs.QanaShaped(42, 64);
    var input = TestGraphs.RandomInput(pkg, 1);
    foreach (var mode in new[] { KernelMode.Optimized, KernelMode.Reference })
    {
        using var engine = IntegerEngine.Create(pkg, mode);
        engine.Run(input);
        int n = mode == KernelMode.Optimized ? 300 : 3;
        var times = new double[n];
        for (int i = 0; i < n; i++)
        {
            long t0 = Stopwatch.GetTimestamp();
            engine.Run(input);
            times[i] = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
        }
        Array.Sort(times);
        Console.WriteLine($"{engine.Name}: p50 {times[n / 2]:F3} ms, min {times[0]:F3} ms, MACs {engine.Macs:N0}, arena {engine.ArenaBytes:N0} B, events {engine.Events:N0}");
    }
    using (var engine = IntegerEngine.Create(pkg))
    {
        engine.Run(input);
        foreach (var (name, kernel, ms) in engine.ProfileLayers(input, 200))
            Console.WriteLine($"  {name,-34} {kernel,-26} {ms * 1000,8:F1} us");
    }
    return;
}
BenchmarkSwitcher.FromAssembly(typeof(EngineBenchmarks).Assembly).Run(args);
