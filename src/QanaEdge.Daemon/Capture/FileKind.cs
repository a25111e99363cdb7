using System.Runtime.InteropServices;

namespace QanaEdge.Daemon.Capture;

/// <summary>
/// What the kernel says of a path: whether an inbox entry is a regular file (after following symlinks), and which mount
/// a path is on (<see cref="Mount"/>). A FIFO, a device node or a symlink to one reports length 0 and "Normal"
/// attributes to .NET like an empty file, but opening a FIFO blocks until a writer comes (it stopped the whole inbox)
/// and /dev/zero never ends; such entries are quarantined unread.
/// <para>
/// Asked of the kernel with statx(2), whose struct has one layout on every architecture (stat's differs between
/// x86-64 and arm64), so one P/Invoke serves both builds.
/// </para>
/// </summary>
internal static partial class FileKind
{
    /// <summary>True for a regular file, false for anything else, null when the kernel cannot say (no statx, or the entry is gone).</summary>
    public static unsafe bool? IsRegularFile(string path)
    {
        byte* statx = stackalloc byte[StatxSize];
        if (!TryStatx(path, 0, StatxType, statx)) return null;
        ushort mode = *(ushort*)(statx + ModeOffset);
        return (mode & SIfMt) == SIfReg;
    }

    /// <summary>
    /// The mount that holds <paramref name="path"/> (the entry itself, not what a symlink leads to, unless
    /// <paramref name="followLinks"/>); null when the kernel cannot say. A rename moves a file only within one mount:
    /// across two, even two mounts of one file system (a bind mount), rename(2) fails with EXDEV and .NET's File.Move
    /// copies and deletes instead (<see cref="CaptureDisposition"/> does that copy itself). The mount id comes with
    /// Linux 5.8; an older kernel gives the file system's device, which tells two file systems apart but not two
    /// mounts of one.
    /// </summary>
    public static unsafe ulong? Mount(string path, bool followLinks = false)
    {
        byte* statx = stackalloc byte[StatxSize];
        if (!TryStatx(path, followLinks ? 0 : AtSymlinkNoFollow, StatxBasicStats | StatxMntId, statx)) return null;
        if ((*(uint*)statx & StatxMntId) != 0) return *(ulong*)(statx + MntIdOffset);
        // stx_dev_major and stx_dev_minor: always filled in, whatever the mask. The top bit keeps a device apart from
        // a mount id (the same kernel answers the same way for both paths, but never mind).
        uint major = *(uint*)(statx + DevMajorOffset), minor = *(uint*)(statx + DevMinorOffset);
        return 1UL << 63 | (ulong)major << 32 | minor;
    }

    /// <summary>
    /// The size and last write time of the entry named by the bytes <paramref name="path"/> (NUL-terminated): a name
    /// that is not UTF-8, which no .NET string reaches (<see cref="UndecodableNames"/>). Null when the kernel cannot say.
    /// </summary>
    public static unsafe (long Size, DateTime WrittenUtc)? SizeAndWriteTime(byte[] path)
    {
        byte* statx = stackalloc byte[StatxSize];
        fixed (byte* p = path)
            if (!TryStatx(p, 0, StatxBasicStats, statx)) return null;
        long seconds = *(long*)(statx + MtimeOffset);
        uint nanoseconds = *(uint*)(statx + MtimeOffset + 8);
        return (*(long*)(statx + SizeOffset), DateTime.UnixEpoch.AddSeconds(seconds).AddTicks(nanoseconds / 100));
    }

    /// <summary>Fills <paramref name="statx"/> (<see cref="StatxSize"/> bytes) for <paramref name="path"/>; false when the kernel cannot say.</summary>
    private static unsafe bool TryStatx(string path, int flags, uint mask, byte* statx)
    {
        byte[] name = [.. System.Text.Encoding.UTF8.GetBytes(path), 0];
        fixed (byte* p = name) return TryStatx(p, flags, mask, statx);
    }

    private static unsafe bool TryStatx(byte* path, int flags, uint mask, byte* statx)
    {
        if (!OperatingSystem.IsLinux()) return false;
        try { return Statx(AtFdCwd, path, flags, mask, statx) == 0; }
        catch (EntryPointNotFoundException) { return false; } // a C library without statx (glibc before 2.28)
    }

    // struct statx, one layout on every architecture: stx_mode at 28, stx_size at 40, stx_mtime (tv_sec, tv_nsec) at 112,
    // stx_dev_major/minor at 136/140, stx_mnt_id at 144.
    private const int AtFdCwd = -100, StatxType = 0x1, StatxSize = 256, ModeOffset = 28, SizeOffset = 40, MtimeOffset = 112;
    private const int AtSymlinkNoFollow = 0x100, DevMajorOffset = 136, DevMinorOffset = 140, MntIdOffset = 144;
    private const uint StatxBasicStats = 0x7FF, StatxMntId = 0x1000;
    private const int SIfMt = 0xF000, SIfReg = 0x8000;

    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true)]
    private static unsafe partial int Statx(int dirfd, byte* path, int flags, uint mask, byte* statxbuf);
}
