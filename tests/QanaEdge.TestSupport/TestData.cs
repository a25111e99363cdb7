namespace QanaEdge.TestSupport;

/// <summary>Locations of test data relative to the repository (CI clones the repo beside a copy of shared/).</summary>
public static class TestData
{
    /// <summary>The folder holding QanaEdge.sln, found by walking up from the test binaries.</summary>
    public static string RepositoryRoot
    {
        get
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
                if (File.Exists(Path.Combine(dir.FullName, "QanaEdge.sln"))) return dir.FullName;
            throw new DirectoryNotFoundException($"no QanaEdge.sln above {AppContext.BaseDirectory}");
        }
    }

    /// <summary>&lt;repo&gt;/../shared/data/ham10000 (images/ISIC_*.jpg and labels.csv).</summary>
    public static string Ham10000Dir => Path.GetFullPath(Path.Combine(RepositoryRoot, "..", "shared", "data", "ham10000"));

    public static string Ham10000Images => Path.Combine(Ham10000Dir, "images");
    public static string Ham10000Labels => Path.Combine(Ham10000Dir, "labels.csv");

    /// <summary>The emulated Akida library (native/akida/qana_akida.h), published by tests/QanaEdge.Akida.Tests'
    /// build (target BuildAkidaEmulator in tests/QanaEdge.AkidaEmulator/Emulator.targets).</summary>
    public static string AkidaEmulator => Path.Combine(RepositoryRoot, "tests", "QanaEdge.AkidaEmulator", "bin", "native", "libqana_akida.so");
}
