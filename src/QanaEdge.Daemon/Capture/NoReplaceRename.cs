using System.Runtime.InteropServices;
using System.Text;

namespace QanaEdge.Daemon.Capture;

/// <summary>
/// rename(2) that never replaces an entry at the new name: renameat2 with RENAME_NOREPLACE, which the kernel checks and
/// renames in one step. .NET's <c>File.Move(from, to, overwrite: false)</c> looks for the new name (lstat) and then
/// renames with plain rename(2), which replaces a file that took the name in between: a capture app renaming its next
/// capture.jpg into the inbox while a claimed capture was put back under that name had it unlinked, unseen.
/// </summary>
internal static partial class NoReplaceRename
{
    /// <summary>Renames <paramref name="from"/> to <paramref name="to"/>, never over an existing entry.</summary>
    /// <exception cref="FileNotFoundException"><paramref name="from"/> is gone.</exception>
    /// <exception cref="IOException"><paramref name="to"/> is taken (HResult <see cref="EExist"/>), or the rename failed.</exception>
    /// <exception cref="UnauthorizedAccessException">A permission was refused.</exception>
    public static void Move(string from, string to)
    {
        if (!OperatingSystem.IsLinux()) { File.Move(from, to, overwrite: false); return; }
        int errno = Rename([.. Encoding.UTF8.GetBytes(from), 0], [.. Encoding.UTF8.GetBytes(to), 0]);
        if (errno == 0) return;
        // Two mounts of one file system that statx could not tell apart (a kernel before 5.8): .NET copies between them.
        // A file system with neither RENAME_NOREPLACE nor hard links (or links refused by fs.protected_hardlinks):
        // .NET's look, then rename, the best it allows.
        if (errno is EXDev or EPerm or EOpNotSupp) { File.Move(from, to, overwrite: false); return; }
        string message = $"cannot rename {from} to {to}: {Marshal.GetPInvokeErrorMessage(errno)}";
        throw errno switch
        {
            ENoEnt => new FileNotFoundException(message, from),
            ENotDir => new DirectoryNotFoundException(message),
            EAcces => new UnauthorizedAccessException(message),
            _ => new IOException(message, errno),
        };
    }

    /// <summary>rename(2) that never replaces an entry: 0, or the errno (<see cref="EExist"/> when the new name is taken).</summary>
    public static unsafe int Rename(byte[] from, byte[] to)
    {
        fixed (byte* f = from, t = to)
        {
            int errno;
            try
            {
                if (RenameAt2(AtFdCwd, f, AtFdCwd, t, RenameNoReplaceFlag) == 0) return 0;
                errno = Marshal.GetLastPInvokeError();
            }
            catch (EntryPointNotFoundException) { errno = EInval; } // a C library without renameat2 (glibc before 2.28)
            if (errno != EInval) return errno;
            // A file system without RENAME_NOREPLACE: a hard link fails on a taken name, and the old one is then removed.
            if (Link(f, t) != 0) return Marshal.GetLastPInvokeError();
            return Unlink(f) == 0 ? 0 : Marshal.GetLastPInvokeError();
        }
    }

    /// <summary>The errno of a name that is taken; also the HResult of the IOException <see cref="Move"/> throws for it.</summary>
    public const int EExist = 17;

    private const int AtFdCwd = -100, RenameNoReplaceFlag = 1, EPerm = 1, ENoEnt = 2, EAcces = 13, EXDev = 18, ENotDir = 20, EInval = 22, EOpNotSupp = 95;

    [LibraryImport("libc", EntryPoint = "renameat2", SetLastError = true)]
    private static unsafe partial int RenameAt2(int oldDirFd, byte* oldPath, int newDirFd, byte* newPath, uint flags);

    [LibraryImport("libc", EntryPoint = "link", SetLastError = true)]
    private static unsafe partial int Link(byte* oldPath, byte* newPath);

    [LibraryImport("libc", EntryPoint = "unlink", SetLastError = true)]
    private static unsafe partial int Unlink(byte* path);
}
