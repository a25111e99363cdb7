namespace QanaEdge.Training.Tests.Data;

/// <summary>Finds the shared HAM10000 copy: REPO/../shared/data/ham10000, i.e. the nearest ancestor folder
/// of the test binaries that holds shared/data/ham10000.</summary>
internal static class Ham10000Location
{
    public static string Dir { get; } = Find();
    public static string Images => Path.Combine(Dir, "images");
    public static string Labels => Path.Combine(Dir, "labels.csv");

    private static string Find()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            var candidate = Path.Combine(d.FullName, "shared", "data", "ham10000");
            if (File.Exists(Path.Combine(candidate, "labels.csv"))) return candidate;
        }
        throw new DirectoryNotFoundException("HAM10000 not found at <repo>/../shared/data/ham10000");
    }
}
