using QanaEdge.Model.Packaging;
using QanaEdge.TestSupport;

namespace QanaEdge.Daemon.Tests.Infrastructure;

/// <summary>
/// A QANA-shaped integer package built in code (TestGraphs) and written to a real .qana file once per test run: the
/// daemon loads it through PackageReader like the shipped model.
/// </summary>
public static class TestModel
{
    private static readonly Lazy<string> File_ = new(() =>
    {
        string dir = TestEnv.TempDir("model");
        string path = Path.Combine(dir, "qana-shaped-7.qana");
        PackageWriter.Save(TestGraphs.QanaShaped(7), path);
        return path;
    });

    public static string Path_ => File_.Value;
    public const string Id = "qana-shaped-7";
}
