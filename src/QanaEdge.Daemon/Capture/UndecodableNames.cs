using System.Runtime.InteropServices;
using System.Text;

namespace QanaEdge.Daemon.Capture;

/// <summary>
/// Inbox entries whose names are not UTF-8: a capture app or a network share writing in a legacy code page
/// ("Müller.jpg" in ISO-8859-1 is the bytes 4D FC 6C 6C 65 72). .NET shows such a name with U+FFFD in place of each
/// undecodable byte, and no path it can build reaches the file: the watcher found it gone at every look, and the
/// capture was never classified, quarantined or logged. <see cref="RenameAll"/> renames each to a name .NET can reach
/// (its bytes read as Windows-1252, every byte one character: "Müller.jpg" again), through the C library, which takes
/// names as bytes.
/// </summary>
internal static partial class UndecodableNames
{
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>
    /// The code page a name is read in. Windows-1252 is ISO-8859-1 with printable characters where ISO-8859-1 has C1
    /// controls (0x80 is "€", 0x96 "–"), and what Windows programs and SMB shares without a charset option write; its five
    /// unassigned bytes still come back as one character each, so no two names become one.
    /// </summary>
    private static readonly Encoding LegacyNames = CodePagesEncodingProvider.Instance.GetEncoding(1252)!;

    /// <summary>
    /// Renames every entry of <paramref name="folder"/> (but folders) whose name is not UTF-8 and that
    /// <paramref name="settled"/> says is written (given its size and the time since its last write; a file renamed
    /// while its writer still writes it would be taken as arrived whole), never over an existing entry (a free variant
    /// of the new name is taken instead). Names that are temporary as Windows-1252 (<paramref name="temporary"/>) are left
    /// to their writer, whose own rename would fail. Returns each rename: the old name as .NET shows it and the new one;
    /// an entry that could not be renamed comes with the error instead of a new name.
    /// </summary>
    public static unsafe List<(string Shown, string? Renamed, string? Error)> RenameAll(string folder, Func<long, TimeSpan, bool> settled,
        Func<string, bool> temporary)
    {
        var done = new List<(string, string?, string?)>();
        if (!OperatingSystem.IsLinux()) return done;
        var undecodable = new List<byte[]>();
        nint dir = OpenDir(folder);
        if (dir == 0) throw new IOException($"cannot read {folder}: errno {Marshal.GetLastPInvokeError()}");
        try
        {
            for (byte* entry; (entry = ReadDir(dir)) != null;)
            {
                if (entry[DTypeOffset] == DtDir) continue;
                // d_name ends with a NUL within the record (d_reclen bytes from its start).
                var room = new ReadOnlySpan<byte>(entry + DNameOffset, *(ushort*)(entry + DRecLenOffset) - DNameOffset);
                ReadOnlySpan<byte> name = room[..Math.Max(0, room.IndexOf((byte)0))];
                if (!IsUtf8(name)) undecodable.Add(name.ToArray());
            }
        }
        finally { _ = CloseDir(dir); }

        byte[] prefix = Encoding.UTF8.GetBytes(folder.TrimEnd('/') + "/");
        foreach (byte[] name in undecodable)
        {
            string shown = Encoding.UTF8.GetString(name), legacy = LegacyNames.GetString(name);
            byte[] from = [.. prefix, .. name, 0];
            if (temporary(legacy) || Written(from) is not var (size, age) || !settled(size, age)) continue;
            string target = legacy;
            int error = 0;
            for (int i = 1; i <= 100; i++)
            {
                error = NoReplaceRename.Rename(from, [.. Encoding.UTF8.GetBytes(Path.Combine(folder, target)), 0]);
                if (error != NoReplaceRename.EExist) break;
                target = $"{Path.GetFileNameWithoutExtension(legacy)}.{i}{Path.GetExtension(legacy)}";
            }
            done.Add(error == 0 ? (shown, target, null) : (shown, null, $"errno {error}"));
        }
        return done;
    }

    private static bool IsUtf8(ReadOnlySpan<byte> name)
    {
        try { StrictUtf8.GetCharCount(name); return true; }
        catch (DecoderFallbackException) { return false; }
    }

    /// <summary>The entry's size and the time since its last write; null when it is gone or the kernel cannot say.</summary>
    private static (long Size, TimeSpan Age)? Written(byte[] path) =>
        FileKind.SizeAndWriteTime(path) is var (size, written) ? (size, DateTime.UtcNow - written) : null;

    // struct dirent of glibc and musl on 64-bit Linux (x86-64 and arm64 alike): d_ino 8, d_off 8, d_reclen 2, d_type 1, d_name.
    private const int DRecLenOffset = 16, DTypeOffset = 18, DNameOffset = 19;
    private const byte DtDir = 4;

    [LibraryImport("libc", EntryPoint = "opendir", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial nint OpenDir(string path);

    [LibraryImport("libc", EntryPoint = "readdir")]
    private static unsafe partial byte* ReadDir(nint dir);

    [LibraryImport("libc", EntryPoint = "closedir")]
    private static partial int CloseDir(nint dir);
}
