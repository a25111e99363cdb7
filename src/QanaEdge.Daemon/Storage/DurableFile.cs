using System.Runtime.InteropServices;
using QanaEdge.Model;

namespace QanaEdge.Daemon.Storage;

/// <summary>
/// Writes that survive a power cut whole or not at all: <see cref="WholeFile.Write"/> (temporary file in the same
/// folder, flushed, renamed over the target) followed by a flush of the folder itself, so that the rename is on disk
/// too (ext4 and most file systems make a rename durable only once the directory is synced). .NET cannot open a folder
/// (it refuses directories on Unix), so the folder is synced through libc's open/fsync/close, here and not in
/// QanaEdge.Model, which makes no native calls.
/// </summary>
internal static partial class DurableFile
{
    private static readonly WholeFileOptions Durable = new() { SyncFolder = SyncDirectory };

    /// <summary>The options for <see cref="WholeFile.Write"/> that make a write durable, with the folder flushed by <paramref name="syncFolder"/> (a test's stand-in), else by <see cref="SyncDirectory"/>.</summary>
    public static WholeFileOptions Options(Action<string>? syncFolder = null) => syncFolder is null ? Durable : new() { SyncFolder = syncFolder };

    /// <exception cref="FolderSyncException">The file is in place; only the flush of its folder failed.</exception>
    /// <exception cref="IOException">The file was not written (the message names it).</exception>
    public static void WriteAllBytes(string path, ReadOnlySpan<byte> bytes) => WholeFile.Write(path, bytes, Durable);

    /// <summary>Deletes a file if it can; a file that cannot be deleted (or is gone) is left as it is.</summary>
    public static void TryDelete(string path)
    {
        try { File.Delete(path); } catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }

    public static void SyncDirectory(string dir)
    {
        if (!OperatingSystem.IsLinux()) return;
        int fd = Open(dir, ORdOnly | OCloExec);
        if (fd < 0) throw new IOException($"cannot open {dir} to sync it: errno {Marshal.GetLastPInvokeError()}");
        try
        {
            if (Fsync(fd) != 0) throw new IOException($"fsync of {dir} failed: errno {Marshal.GetLastPInvokeError()}");
        }
        finally { _ = Close(fd); }
    }

    // O_RDONLY and O_CLOEXEC have the same values on x86-64 and arm64 Linux (O_DIRECTORY does not; a folder opens
    // read-only without it).
    private const int ORdOnly = 0, OCloExec = 0x80000;

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "close")]
    private static partial int Close(int fd);
}
