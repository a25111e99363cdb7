using QanaEdge.Model;
using QanaEdge.Model.Packaging;

namespace QanaEdge.Cli.Commands;

/// <summary>File helpers shared by the verbs.</summary>
public static class Files
{
    /// <summary>Reads a package file's bytes (size-limited, without parsing).</summary>
    public static byte[] ReadPackageBytes(string path)
    {
        if (ExpectedPath.FileProblem(path) is { } problem) throw new CommandFailedException($"'{path}' {problem}");
        var info = new FileInfo(path);
        if (info.Length > PackageLimits.MaxFileBytes) throw new PackageFormatException($"'{path}' exceeds the package size limit");
        return File.ReadAllBytes(path);
    }

    /// <summary>
    /// Loads the package a verb runs as a model (classify, evaluate, bench). A readout update holds only a readout and
    /// its input is the head's feature vector, not an image: classify and evaluate failed on it with an internal error,
    /// and bench measured the readout alone as if it were the model.
    /// </summary>
    /// <exception cref="CommandFailedException">The package is a readout update.</exception>
    public static ModelPackage LoadModel(string path)
    {
        ModelPackage package = PackageReader.Load(path);
        if (package.Manifest.Kind == PackageKind.ReadoutUpdate)
            throw new CommandFailedException(
                $"'{path}' is a readout update for {package.Manifest.BaseModelId} {package.Manifest.BaseModelVersion}, not a model: give its model with --model");
        return package;
    }

    /// <summary>
    /// Writes the file whole (<see cref="WholeFile.Write"/>: beside the target, flushed to the disk, then renamed), so no
    /// reader ever sees half a file and a power cut leaves the old file or the new one. The temporary name carries the
    /// process id, so two runs writing the same output do not share one. On failure the temporary file is removed and
    /// the error names the target.
    /// </summary>
    /// <exception cref="CommandFailedException">The file cannot be written.</exception>
    public static void WriteAtomically(string path, ReadOnlySpan<byte> bytes)
    {
        string full = CheckWritable(path);
        try { WholeFile.Write(full, bytes, WholeFileOptions.UserOutput); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CommandFailedException($"cannot write '{path}': {Cli.OneLine(e.Message)}");
        }
    }

    /// <summary>
    /// Refuses an empty output path as bad usage (exit 2). It is usually an unset shell variable (--json "$OUT"), and it
    /// failed deep inside as an internal error: Path.GetFullPath and Directory.CreateDirectory throw ArgumentException.
    /// </summary>
    /// <exception cref="UsageException">The path is empty or blank.</exception>
    public static void RefuseEmpty(string path, string what)
    {
        if (string.IsNullOrWhiteSpace(path)) throw new UsageException($"{what} is empty");
    }

    /// <summary>
    /// Refuses an output file path that names a folder (an existing one, or any path ending in a separator). For
    /// outputs written only at the end of a long run, whose missing folders the run creates itself, so
    /// <see cref="CheckWritable"/> would be too strict.
    /// </summary>
    /// <exception cref="CommandFailedException">The path is a folder.</exception>
    public static void RefuseFolder(string path, string option)
    {
        RefuseEmpty(path, option);
        if (Directory.Exists(path) || Path.EndsInDirectorySeparator(path))
            throw new CommandFailedException($"cannot write '{path}': it is a folder ({option} names a file)");
    }

    /// <summary>
    /// Refuses as bad usage (exit 2) an output that names one of the verb's input files: the output replaces the file
    /// whole, so the input is lost, with nothing said (a private key given for the signed package, a package given
    /// for its own ONNX export or benchmark JSON). An input that is a link counts as the file it leads to, which the
    /// output would replace; an output that is a link is itself replaced (a rename), leaving what it led to intact.
    /// </summary>
    /// <exception cref="UsageException">The output is the input.</exception>
    public static void RefuseInputAsOutput(string output, string outputName, string input, string inputName, string consequence)
    {
        string full = Path.GetFullPath(output), inputFull = Path.GetFullPath(input);
        if (full == inputFull || full == LinkTarget(inputFull))
            throw new UsageException($"{outputName} '{output}' is the {inputName} file; {consequence}");
    }

    /// <summary>The file a link finally leads to, or null for a path that is not a link (or cannot be read).</summary>
    private static string? LinkTarget(string path)
    {
        try { return File.ResolveLinkTarget(path, returnFinalTarget: true)?.FullName; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
    }

    /// <summary>
    /// The full path of an output file that can plausibly be written: its folder exists and it is not a folder itself.
    /// Verbs call it before long work, so a mistyped output path fails at once rather than after the work is done.
    /// </summary>
    /// <exception cref="CommandFailedException">The folder does not exist, or the path is a folder.</exception>
    /// <exception cref="UsageException">The path is empty.</exception>
    public static string CheckWritable(string path, string what = "the output path")
    {
        RefuseEmpty(path, what);
        string full = Path.GetFullPath(path);
        if (Directory.Exists(full)) throw new CommandFailedException($"cannot write '{path}': it is a folder");
        string? folder = Path.GetDirectoryName(full);
        if (folder is not null && !Directory.Exists(folder)) throw new CommandFailedException($"cannot write '{path}': the folder '{folder}' does not exist");
        return full;
    }
}
