namespace QanaEdge.Model;

/// <summary>
/// The one way files are written whole (and, <see cref="ReadAtMost"/>, read whole within a bound): the bytes go to a temporary file beside the target, which is flushed to the
/// disk and renamed over the target, so no reader ever sees half a file and a power cut leaves the old file or the new
/// one (a rename within a folder is atomic). Packages, the CLI's outputs, training's reports, checkpoint, figures and
/// splits, the evaluation report, signing keys and the daemon's state, quarantine and camera frames all go through it;
/// <see cref="WholeFileOptions"/> holds what differs between them. It lives here, in the lowest project, because every
/// other project may use it.
/// </summary>
public static class WholeFile
{
    /// <summary>
    /// Reads a file whole, but never more than <paramref name="limit"/> bytes of it: null when it holds more, with
    /// <paramref name="size"/> the size it reported, or −1 when it was read without one. A device, a pipe or a /proc
    /// file reports no size (or 0) and may never end, so such a file is read in pieces, stopping one byte past the limit:
    /// taken at its reported size, /dev/zero was read until memory ran out. Image files and model packages, which users
    /// and captures name, are read through it.
    /// </summary>
    /// <exception cref="IOException">The file cannot be opened or read (missing: <see cref="FileNotFoundException"/>).</exception>
    /// <exception cref="UnauthorizedAccessException">Reading it is not permitted.</exception>
    public static byte[]? ReadAtMost(string path, long limit, out long size)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 0);
        size = stream.CanSeek ? stream.Length : 0;
        if (size > limit) return null;
        if (size > 0)
        {
            var whole = new byte[size];
            stream.ReadExactly(whole);
            return whole;
        }
        size = -1;
        using var read = new MemoryStream();
        var piece = new byte[1 << 16];
        for (int n; (n = stream.Read(piece, 0, (int)Math.Min(piece.Length, limit + 1 - read.Length))) > 0;)
        {
            read.Write(piece, 0, n);
            if (read.Length > limit) return null;
        }
        return read.ToArray();
    }

    /// <summary>Writes <paramref name="bytes"/> to <paramref name="path"/> whole or not at all.</summary>
    /// <exception cref="IOException">
    /// The file could not be written; nothing was renamed and the temporary file is gone. The message names
    /// <paramref name="path"/>, never the temporary file (the inner exception is the original, with its error code).
    /// </exception>
    /// <exception cref="UnauthorizedAccessException">As <see cref="IOException"/>, for a permission refused.</exception>
    /// <exception cref="FolderSyncException">
    /// The file is in place (the rename happened), but <see cref="WholeFileOptions.SyncFolder"/> failed: the new file
    /// is what every reader sees from now on, only its survival of a power cut is in doubt.
    /// </exception>
    public static void Write(string path, ReadOnlySpan<byte> bytes, WholeFileOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        options ??= WholeFileOptions.Default;
        string temp = options.PerProcessTemporary ? $"{path}.tmp-{Environment.ProcessId}" : $"{path}.tmp";
        if (options.TemporaryPrefix is { } prefix) temp = Path.Combine(Path.GetDirectoryName(temp)!, prefix + Path.GetFileName(temp));
        try
        {
            // A leftover of an interrupted attempt goes first: written over, it would keep its own permissions.
            File.Delete(temp);
            var create = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, Share = FileShare.None };
            // Owner-only files (private keys) have mode 0600 from their first byte: there is no moment others could read them.
            if (options.OwnerOnly && !OperatingSystem.IsWindows()) create.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
            using (var stream = new FileStream(temp, create))
            {
                stream.Write(bytes);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temp, path, options.Overwrite);
        }
        catch (Exception e)
        {
            // A full disk or a failed flush leaves no half-written file behind (in the daemon's inbox nothing would
            // ever take it; beside a user's output it is litter).
            try { File.Delete(temp); } catch (Exception d) when (d is IOException or UnauthorizedAccessException) { }
            if (e is IOException or UnauthorizedAccessException) throw NamingTarget(e, temp, path);
            throw;
        }
        if (options.SyncFolder is { } sync)
        {
            string folder = Path.GetDirectoryName(Path.GetFullPath(path))!;
            try { sync(folder); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new FolderSyncException(path, folder, e);
            }
        }
    }

    /// <summary>The same failure, its message naming the target instead of the temporary file the user never asked for.</summary>
    private static Exception NamingTarget(Exception e, string temp, string path)
    {
        string message = e.Message.Replace(Path.GetFullPath(temp), Path.GetFullPath(path), StringComparison.Ordinal)
            .Replace(temp, path, StringComparison.Ordinal);
        return e is UnauthorizedAccessException ? new UnauthorizedAccessException(message, e) : new IOException(message, e);
    }
}

/// <summary>What differs between the writers of <see cref="WholeFile.Write"/>.</summary>
public sealed record WholeFileOptions
{
    /// <summary>Replaces an existing file, no temporary name per process, no folder sync.</summary>
    public static WholeFileOptions Default { get; } = new();

    /// <summary>A user's output (the CLI's files, the evaluation report): <see cref="PerProcessTemporary"/>, nothing else.</summary>
    public static WholeFileOptions UserOutput { get; } = new() { PerProcessTemporary = true };

    /// <summary>
    /// Replace a file that is already there (default). Without it, the rename refuses an existing target: keys are
    /// never overwritten.
    /// </summary>
    public bool Overwrite { get; init; } = true;

    /// <summary>Create the file readable and writable by its owner only (0600), as private keys are.</summary>
    public bool OwnerOnly { get; init; }

    /// <summary>
    /// Name the temporary file <c>PATH.tmp-PID</c> instead of <c>PATH.tmp</c>, so that two processes writing the same
    /// target (two runs of <c>qana</c>) never write into one temporary file. The daemon keeps <c>PATH.tmp</c>: its
    /// inbox watcher skips <c>.tmp</c> names, and it writes each of its files from one place.
    /// </summary>
    public bool PerProcessTemporary { get; init; }

    /// <summary>
    /// Put before the temporary file's name (<c>DIR/PREFIX NAME.tmp</c>): a writer whose leftovers are removed at its
    /// next start gives them a name no other program writes, so that it removes only its own.
    /// </summary>
    public string? TemporaryPrefix { get; init; }

    /// <summary>
    /// Flushes the folder after the rename (given the folder's full path), so that the rename is on the disk too:
    /// ext4 and most file systems make a rename durable only once the directory is synced. Null: not flushed (a power
    /// cut right after the write may then leave the old file). .NET cannot open a folder, so this is the caller's,
    /// through the C library (the daemon's <c>DurableFile.SyncDirectory</c>); this project stays free of native calls.
    /// </summary>
    public Action<string>? SyncFolder { get; init; }
}

/// <summary>
/// The file was renamed into place, but the folder holding it could not be flushed afterwards: every reader sees the
/// new file, and so does the next start unless power is lost before the kernel writes the folder out on its own.
/// An <see cref="IOException"/>, so a caller that does not tell the two apart still sees a failure.
/// </summary>
public sealed class FolderSyncException(string path, string folder, Exception inner)
    : IOException($"'{path}' was written, but its folder '{folder}' could not be flushed to the disk: {inner.Message}", inner)
{
    /// <summary>The file that was written (and is in place).</summary>
    public string FilePath => path;
}
