using System.Diagnostics;
using QanaEdge.Model.Packaging;
using QanaEdge.TestSupport;

namespace QanaEdge.Cli.Tests;

/// <summary>
/// A mistyped <c>QANA_KERNEL_ISA</c> is bad usage: one line naming the variable and the values it takes, exit 2. The
/// variable is read once per process, so <c>qana</c> runs as a child process (the qana.dll built beside the tests).
/// </summary>
public sealed class KernelCapTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("qana-isa-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static CliResult RunChild(IDictionary<string, string> environment, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add("exec");
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "qana.dll"));
        foreach (string a in args) psi.ArgumentList.Add(a);
        foreach (var (k, v) in environment) psi.Environment[k] = v;
        using var process = Process.Start(psi)!;
        Task<string> output = process.StandardOutput.ReadToEndAsync();
        Task<string> error = process.StandardError.ReadToEndAsync();
        Assert.True(process.WaitForExit(TimeSpan.FromMinutes(2)), "qana did not exit");
        return new CliResult(process.ExitCode, output.Result, error.Result.ReplaceLineEndings("\n"));
    }

    [Fact]
    public void A_mistyped_kernel_cap_is_one_line_of_bad_usage_before_anything_runs()
    {
        string package = Path.Combine(_dir, "test.qana");
        PackageWriter.Save(TestGraphs.QanaShaped(3), package);
        string image = ClassifyCommandTests.Jpegs(1)[0];

        // classify reaches the kernels: the cap used to fail there as a TypeInitializationException.
        RunChild(new Dictionary<string, string> { ["QANA_KERNEL_ISA"] = "neon" }, "classify", image, "--model", package)
            .AssertOneLineError(2, "qana: QANA_KERNEL_ISA='neon' is not a kernel cap: expected avxvnni, avx2, sse2 or portable");
        // A verb that never touches the kernels says the same, rather than leaving the mistake for later.
        RunChild(new Dictionary<string, string> { ["QANA_KERNEL_ISA"] = "avx-2" }, "inspect", package)
            .AssertOneLineError(2, "QANA_KERNEL_ISA='avx-2'");
        // A valid cap runs.
        CliResult ok = RunChild(new Dictionary<string, string> { ["QANA_KERNEL_ISA"] = "sse2" }, "classify", image, "--model", package, "--json");
        Assert.True(ok.Code == 0, ok.Err);
    }
}
