namespace QanaEdge.Model.Packaging;

/// <summary>
/// Finds the model package to use. An explicit path wins. Otherwise the folder <c>firmware-models/</c> is
/// searched from the executable's folder upward, then from the current directory upward; the first such
/// folder that holds a package decides: its one-line <c>DEFAULT</c> file names the package, or, without
/// one, it must hold exactly one <c>*.qana</c>.
/// </summary>
public static class DefaultModel
{
    public const string FolderName = "firmware-models";
    public const string DefaultFileName = "DEFAULT";

    /// <exception cref="FileNotFoundException">No package found, or the named one does not exist or is a folder.</exception>
    /// <exception cref="PackageFormatException">The folder is ambiguous or DEFAULT is malformed.</exception>
    public static string Locate(string? explicitPath)
    {
        if (!string.IsNullOrWhiteSpace(explicitPath))
        {
            string full = Path.GetFullPath(explicitPath);
            if (ExpectedPath.FileProblem(full) is { } problem) throw new FileNotFoundException($"model package '{explicitPath}' {problem}", full);
            return full;
        }
        foreach (string start in new[] { AppContext.BaseDirectory, Directory.GetCurrentDirectory() })
        {
            for (DirectoryInfo? dir = new(start); dir is not null; dir = dir.Parent)
            {
                string folder = Path.Combine(dir.FullName, FolderName);
                string? found = FromFolder(folder);
                if (found is not null) return found;
            }
        }
        throw new FileNotFoundException(
            $"no model package: pass --model, or put one in a '{FolderName}/' folder beside the executable or above the current directory");
    }

    /// <summary>The default package of one folder, or null when the folder holds none.</summary>
    public static string? FromFolder(string folder)
    {
        if (!Directory.Exists(folder)) return null;
        string defaultFile = Path.Combine(folder, DefaultFileName);
        if (File.Exists(defaultFile))
        {
            string[] lines = File.ReadAllLines(defaultFile).Select(l => l.Trim()).Where(l => l.Length > 0).ToArray();
            if (lines.Length != 1)
                throw new PackageFormatException($"'{defaultFile}' must hold exactly one line, the package's file name");
            string name = lines[0];
            if (name.Contains('/') || name.Contains('\\') || name is "." or "..")
                throw new PackageFormatException($"'{defaultFile}' must name a file inside '{folder}', not '{name}'");
            string path = Path.Combine(folder, name);
            if (ExpectedPath.FileProblem(path) is { } problem)
                throw new FileNotFoundException($"'{defaultFile}' names '{name}', which {ExpectedPath.AsClause(problem)}", path);
            return Path.GetFullPath(path);
        }
        string[] packages = Directory.GetFiles(folder, "*.qana");
        if (packages.Length == 0) return null;
        if (packages.Length > 1)
            throw new PackageFormatException($"'{folder}' holds {packages.Length} packages and no {DefaultFileName} file naming the default");
        return Path.GetFullPath(packages[0]);
    }
}
