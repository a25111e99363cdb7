using QanaEdge.Model.Packaging;

namespace QanaEdge.Cli.Commands;

/// <summary>File helpers shared by the verbs.</summary>
public static class Files
{
    /// <summary>Reads a package file's bytes (size-limited, without parsing).</summary>
    public static byte[] ReadPackageBytes(string path)
    {
        var info = new FileInfo(path);
        if (!info.Exists) throw new CommandFailedException($"'{path}' not found");
        if (info.Length > PackageLimits.MaxFileBytes) throw new PackageFormatException($"'{path}' exceeds the package size limit");
        return File.ReadAllBytes(path);
    }

    /// <summary>Writes beside the target, then renames, so no reader ever sees half a file.</summary>
    public static void WriteAtomically(string path, ReadOnlySpan<byte> bytes)
    {
        string full = Path.GetFullPath(path);
        string temp = $"{full}.tmp-{Environment.ProcessId}";
        using (var stream = new FileStream(temp, FileMode.Create, FileAccess.Write))
            stream.Write(bytes);
        File.Move(temp, full, overwrite: true);
    }
}
