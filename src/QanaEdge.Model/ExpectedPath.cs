namespace QanaEdge.Model;

/// <summary>
/// What is wrong with a path given where a file, or a folder, is expected: the one place the CLI's verbs, the
/// training data index, key and trust-store loading, the model locator and the daemon's options ask. A folder given
/// for a file (or a file for a folder) is not reported as "not found", which sends the reader looking for a typo.
/// </summary>
public static class ExpectedPath
{
    public const string NotFound = "not found";
    public const string FolderForFile = "is a directory, expected a file";
    public const string FileForFolder = "is a file, expected a directory";

    /// <summary>Null when <paramref name="path"/> is an existing file; otherwise why not, as a phrase to follow the path's name.</summary>
    public static string? FileProblem(string path) =>
        File.Exists(path) ? null : Directory.Exists(path) ? FolderForFile : NotFound;

    /// <summary>
    /// A problem as a clause after a name where "not found" does not read ("'X' names 'Y', which does not exist"): "does
    /// not exist" for <see cref="NotFound"/>, the problem itself otherwise.
    /// </summary>
    public static string AsClause(string problem) => problem == NotFound ? "does not exist" : problem;

    /// <summary>Null when <paramref name="path"/> is an existing folder; otherwise why not, as a phrase to follow the path's name.</summary>
    public static string? FolderProblem(string path) =>
        Directory.Exists(path) ? null : File.Exists(path) ? FileForFolder : NotFound;
}
