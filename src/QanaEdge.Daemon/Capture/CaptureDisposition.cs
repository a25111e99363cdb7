using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Logging;
using QanaEdge.Daemon.Configuration;
using QanaEdge.Daemon.Hosting;
using QanaEdge.Daemon.Storage;

namespace QanaEdge.Daemon.Capture;

/// <summary>
/// Acknowledges captures once their result is stored (move to the done folder or delete, by config) and quarantines
/// rejected ones (moved, with a <c>.reason</c> file beside them).
/// <para>
/// An inbox capture is known by its path, but a path can change hands while its capture is in the pipeline: a new
/// image renamed over the name, or the file rewritten. So the file is first claimed (renamed, in the same folder, to
/// <see cref="ClaimPrefix"/> + a random tag + its name, which the watcher never takes), and only moved or deleted if
/// the claimed file holds the bytes that were classified (SHA-256). Otherwise it is put back under its name (or a
/// free variant of it) and the watcher, told when the pipeline releases the path, takes it as a new capture. After
/// the claim nothing else can replace what is under the claimed name, so the check and the move or delete see the
/// same file. A claimed file left by a kill is put back into the inbox at the next start
/// (<see cref="RecoverClaims"/>) and classified again (or found a duplicate): nothing is lost either way.
/// </para>
/// <para>
/// The done and quarantine folders may be on another mount than the inbox, where no rename reaches: the file is
/// copied there instead (<see cref="MoveInto"/>), made durable, and only then deleted from the inbox.
/// </para>
/// <paramref name="syncFolder"/> flushes a folder (a test's stand-in); by default <see cref="DurableFile.SyncDirectory"/>.
/// </summary>
public sealed class CaptureDisposition(QanaOptions options, ILogger<CaptureDisposition> log, Action<string>? syncFolder = null)
{
    private readonly Action<string> _syncFolder = syncFolder ?? DurableFile.SyncDirectory;

    // Acknowledgements that failed since the last one that moved or deleted a capture. A done folder that cannot be
    // written fails every capture's every try: with a capture a minute, by the end of a day about 1,440 captures retried
    // every 5 minutes each, five error lines a second. The 1st, 10th, 100th ... in a row are errors, the rest debug lines.
    private long _failedInARow;

    // Quarantines that failed since the last one that worked, counted apart: the quarantine folder may be on another
    // disk than done/, and a flood of rejected files (a capture app's sidecars) against one that cannot be written
    // logged an error at every file's every try. Reported as the acknowledgements are.
    private long _quarantinesFailedInARow;

    /// <summary>Start of the name a capture takes while it is acknowledged or quarantined (a leading dot: never a capture).</summary>
    public const string ClaimPrefix = ".qanad-";

    /// <summary>
    /// Start of the name of a capture being copied into the done or quarantine folder on another mount (renamed to
    /// its own name once whole and flushed); one left by a kill is removed at the next start (<see cref="RecoverClaims"/>).
    /// </summary>
    public const string CopyPrefix = ".qanad-copy-";

    /// <summary>What a quarantined capture's reason file adds to its name.</summary>
    public const string ReasonSuffix = ".reason";

    /// <summary>
    /// Moves or deletes an inbox file whose result is stored, if it still holds the bytes with <paramref name="sha256"/>.
    /// False when that failed (the file is back under its name, to be tried again later); true when it is done, or
    /// when the name now holds another file (or none).
    /// </summary>
    public bool Acknowledge(string path, string sha256)
    {
        string? claimed = null;
        try
        {
            claimed = Claim(path, sha256);
            if (claimed is null) return true;
            if (options.Done == DonePolicy.Delete) File.Delete(claimed);
            else
            {
                Directory.CreateDirectory(options.DoneDir!);
                MoveInto(claimed, UniqueTarget(options.DoneDir!, Path.GetFileName(path), extra: 0));
            }
            if (Interlocked.Exchange(ref _failedInARow, 0) is var failed and > 0)
                log.LogInformation("Acknowledged {File}, after {Count} failed acknowledgements in a row", path, failed);
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            long failed = Interlocked.Increment(ref _failedInARow);
            log.Log(Logging.IsReported(failed) ? LogLevel.Error : LogLevel.Debug,
                "Cannot acknowledge {File}: {Error} (its result is stored; it is tried again later) ({Count} failed in a row; errors at 1, 10, 100 ...)",
                path, e.Message, failed);
            if (claimed is not null) PutBack(claimed, path);
            return false;
        }
    }

    /// <summary>
    /// Renames the file at <paramref name="path"/> to a claimed name beside it and returns that name if it holds the
    /// bytes with <paramref name="sha256"/>; null when there is no file, or when it is another one (put back).
    /// </summary>
    private string? Claim(string path, string sha256)
    {
        string dir = Path.GetDirectoryName(path)!, name = Path.GetFileName(path);
        // Keeps the name, for a kill's recovery, cut to fit NAME_MAX with the prefix and tag (16 bytes).
        string claimed = Path.Combine(dir, $"{ClaimPrefix}{Random.Shared.Next():x8}-{Fitting(name, ClaimPrefix.Length + 9)}");
        try { NoReplaceRename.Move(path, claimed); }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException) { return null; } // acknowledged already (the same path twice)
        bool same;
        try
        {
            using var stream = new FileStream(claimed, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, bufferSize: 1, FileOptions.SequentialScan);
            same = string.Equals(Convert.ToHexStringLower(SHA256.HashData(stream)), sha256, StringComparison.Ordinal);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            PutBack(claimed, path);
            throw;
        }
        if (same) return claimed;
        string back = PutBack(claimed, path);
        log.LogWarning("{File} changed after it was read (a new file under its name?): left in the inbox as {Name}, to be classified",
            path, Path.GetFileName(back));
        return null;
    }

    /// <summary>Renames a claimed file back to <paramref name="path"/>, or to a free variant of it when that name is taken again.</summary>
    private string PutBack(string claimed, string path)
    {
        string dir = Path.GetDirectoryName(path)!, name = Path.GetFileName(path);
        for (int attempt = 0; ; attempt++)
        {
            string target = attempt == 0 ? path : UniqueTarget(dir, name, extra: 0);
            try
            {
                // Never over a file that took the name meanwhile (a capture app's next capture.jpg): File.Move with
                // overwrite: false looks, then renames, and a file renamed in between was replaced.
                NoReplaceRename.Move(claimed, target);
                return target;
            }
            catch (IOException) when (attempt < 8 && File.Exists(claimed)) { /* the name was taken: try a free variant */ }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                log.LogError("Cannot put {Claimed} back as {File}: {Error}; it is put back at the next start", claimed, path, e.Message);
                return claimed;
            }
        }
    }

    /// <summary>
    /// Puts back into the inbox every file claimed when the daemon stopped (a kill between the claim and the move or
    /// delete), under its own name or a free variant: the next scan classifies it, or finds it a duplicate. Removes
    /// the temporary files of camera frames a kill cut off.
    /// </summary>
    public void RecoverClaims()
    {
        // A camera frame cut off by a kill while it was written: never accepted (the capture failed), so only litter.
        // Only the daemon's own temporaries: another writer's camera-0001.jpg.tmp is its capture on its way.
        foreach (string partial in Directory.EnumerateFiles(options.Inbox, CameraTrigger.TemporaryPrefix + "*.tmp"))
        {
            DurableFile.TryDelete(partial);
            log.LogWarning("Removed {File}, a camera frame whose writing the daemon did not finish", Path.GetFileName(partial));
        }
        foreach (string claimed in Directory.EnumerateFiles(options.Inbox, ClaimPrefix + "*"))
        {
            // A frame's temporary that could not be removed is no claim (a claim's tag is hex, "camera" is not).
            if (Path.GetFileName(claimed).StartsWith(CameraTrigger.TemporaryPrefix, StringComparison.Ordinal)) continue;
            string rest = Path.GetFileName(claimed)[ClaimPrefix.Length..];
            int dash = rest.IndexOf('-', StringComparison.Ordinal);
            string name = dash >= 0 && dash + 1 < rest.Length ? rest[(dash + 1)..] : "capture";
            string back = PutBack(claimed, Path.Combine(options.Inbox, name));
            log.LogWarning("{Claimed} was being acknowledged when the daemon stopped: back in the inbox as {Name}", Path.GetFileName(claimed), Path.GetFileName(back));
        }
        // A copy into the done or quarantine folder cut off by a kill: its capture is still in the inbox (deleted only
        // once the copy is in place), so the copy is only litter.
        foreach (string? folder in new[] { options.DoneDir, options.QuarantineDir }.Distinct(StringComparer.Ordinal))
        {
            if (folder is null || !Directory.Exists(folder)) continue;
            try
            {
                foreach (string copy in Directory.EnumerateFiles(folder, CopyPrefix + "*"))
                {
                    DurableFile.TryDelete(copy);
                    log.LogWarning("Removed {File}, a copy into {Folder} that the daemon did not finish", Path.GetFileName(copy), folder);
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // Not a reason not to start: the folder's problem shows when a capture is moved there.
                log.LogWarning("Cannot look for unfinished copies in {Folder}: {Error}", folder, e.Message);
            }
        }
    }

    /// <summary>
    /// Moves a capture (its claimed name, or an unread one) to <paramref name="target"/> in the done or quarantine
    /// folder. Within one mount that is a rename. Across two (another file system, or a bind mount of the inbox's own:
    /// rename(2) crosses neither), File.Move copies and then deletes, and that went wrong three ways: a copy that failed
    /// (a full disk) was left behind cut short under the capture's name, looking like a finished capture, with one more
    /// at every retry under a free variant of the name; the source was deleted before the copy was on disk, so a power
    /// cut could lose a capture whose result was stored; and a FIFO was opened to be copied, which blocks until a
    /// writer comes, and with it the whole inbox. So across mounts a regular file is
    /// copied under <see cref="CopyPrefix"/> (a name nothing takes for a capture), flushed, renamed into place, its
    /// folder flushed, and only then deleted from the inbox; on any failure the copy is removed and the capture stays.
    /// Anything else (a FIFO, device or socket, quarantined unread) is not copied: it is deleted, its reason (written
    /// before) kept in quarantine.
    /// </summary>
    /// <exception cref="IOException">Nothing was moved: the capture is where it was, and no copy is left.</exception>
    private void MoveInto(string source, string target)
    {
        string folder = Path.GetDirectoryName(target)!;
        // One mount, or unknown (no statx): the rename, as before.
        if (FileKind.Mount(source) is not ulong from || FileKind.Mount(folder, followLinks: true) is not ulong to || from == to)
        {
            NoReplaceRename.Move(source, target);
            return;
        }
        if (FileKind.IsRegularFile(source) == false)
        {
            File.Delete(source);
            log.LogInformation("{File} is not a regular file and {Folder} is on another mount: removed, not copied", Path.GetFileName(source), folder);
            return;
        }
        string copy = Path.Combine(folder, $"{CopyPrefix}{Random.Shared.Next():x8}");
        try
        {
            using (var input = new FileStream(source, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, bufferSize: 1, FileOptions.SequentialScan))
            using (var output = new FileStream(copy, FileMode.CreateNew, FileAccess.Write, FileShare.None, bufferSize: 1))
            {
                input.CopyTo(output, 64 * 1024);
                // What a rename keeps, and .NET's copy kept too: the capture's time stamp and mode.
                File.SetLastWriteTimeUtc(output.SafeFileHandle, File.GetLastWriteTimeUtc(input.SafeFileHandle));
                if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(output.SafeFileHandle, File.GetUnixFileMode(input.SafeFileHandle));
                output.Flush(flushToDisk: true);
            }
            // A file that took the name meanwhile stays, as in PutBack.
            NoReplaceRename.Move(copy, target);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            DurableFile.TryDelete(copy);
            throw;
        }
        try { _syncFolder(folder); }
        catch (IOException)
        {
            // The copy is on disk, but its name might not survive a power cut; deleting the capture now could then
            // leave it in neither folder. So the copy is taken back and the capture stays, to be tried again.
            DurableFile.TryDelete(target);
            throw;
        }
        try { File.Delete(source); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // The capture stays in the inbox, to be tried again: the copy is taken back, so that the retry leaves one, not two.
            DurableFile.TryDelete(target);
            throw;
        }
    }

    /// <summary>
    /// Moves a rejected capture to the quarantine folder with a <c>NAME.reason</c> file beside it (written and flushed
    /// first: a kill in between leaves a reason whose capture is still in the inbox and is quarantined again, never a
    /// capture without its reason). <paramref name="sha256"/> "-": unread (too large, not a file), moved as it is.
    /// When the name holds another file by now, the rejected bytes, which only the pipeline still has, are written to
    /// quarantine instead, and the new file stays to be classified. False when nothing could be quarantined (the capture
    /// stays in the inbox, to be tried again later).
    /// </summary>
    public bool Quarantine(CaptureItem item, string sha256, string reason, string message)
    {
        // One line per field: messages from decoders can span lines.
        message = string.Join(' ', message.Split(['\r', '\n'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        string? target = null;
        // Set once the name is found to hold another file: the rejected bytes are then only in memory.
        bool takenOver = false;
        try
        {
            Directory.CreateDirectory(options.QuarantineDir!);
            target = UniqueTarget(options.QuarantineDir!, Path.GetFileName(item.Path), ReasonBytes);
            byte[] why = Encoding.UTF8.GetBytes(string.Create(CultureInfo.InvariantCulture,
                $"reason: {reason}\nmessage: {message}\nsha256: {sha256}\nsource: {item.Source}\nquarantined_at: {DateTime.UtcNow:O}\n"));
            if (sha256 == "-")
            {
                DurableFile.WriteAllBytes(target + ReasonSuffix, why);
                MoveInto(item.Path, target);
            }
            else if (Claim(item.Path, sha256) is string claimed)
            {
                // The reason's write is inside too: on a full disk it is what fails, and a capture left under its claimed
                // name is one the watcher never takes, so it would wait for the next start instead of the next try.
                try
                {
                    DurableFile.WriteAllBytes(target + ReasonSuffix, why);
                    MoveInto(claimed, target);
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException) { PutBack(claimed, item.Path); throw; }
            }
            else
            {
                // Renamed over (or removed) while in flight: the file read is no longer in the inbox, and its bytes are
                // only in memory. If they cannot be written there is nothing to try again (the name holds another file,
                // which the watcher takes as a new capture once this one is settled), so that is said and it is settled.
                takenOver = true;
                DurableFile.WriteAllBytes(target + ReasonSuffix, why);
                DurableFile.WriteAllBytes(target, item.Bytes);
            }
            try { _syncFolder(options.QuarantineDir!); }
            catch (IOException e)
            {
                // The capture is in quarantine already; only its new name's durability is in doubt, and a power cut that
                // undid a rename leaves the capture in the inbox, to be quarantined again.
                log.LogWarning("Quarantined {File} ({Reason}), but {Folder} could not be flushed: {Error}; a power cut may undo the move",
                    item.DisplayName, reason, options.QuarantineDir, e.Message);
            }
            log.LogWarning("Quarantined {File}: {Reason}: {Message}", item.DisplayName, reason, message);
            if (Interlocked.Exchange(ref _quarantinesFailedInARow, 0) is var failed and > 0)
                log.LogInformation("Quarantined {File}, after {Count} failed quarantines in a row", item.DisplayName, failed);
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            if (target is not null && !File.Exists(target)) DurableFile.TryDelete(target + ReasonSuffix);
            long failed = Interlocked.Increment(ref _quarantinesFailedInARow);
            log.Log(Logging.IsReported(failed) ? LogLevel.Error : LogLevel.Debug,
                "Cannot quarantine {File} ({Reason}): {Error}; {Consequence} ({Count} failed in a row; errors at 1, 10, 100 ...)",
                item.DisplayName, reason, e.Message,
                takenOver ? "its name holds another file by now, so its rejected bytes are not kept" : "it stays in the inbox and is tried again later",
                failed);
            return takenOver;
        }
    }

    /// <summary>
    /// name, or name with a numeric suffix when a file of that name is already there; either cut to fit NAME_MAX with
    /// <paramref name="extra"/> bytes more (<see cref="Fitting"/>). The search for a free suffix goes
    /// on from where the last one for that name ended: a capture app that always writes capture.jpg made every move
    /// look at each earlier capture.N.jpg (at 10,000, twenty thousand lookups a capture). The first search for a name
    /// after a start finds where its suffixes end by doubling and halving (<see cref="LastTakenSuffix"/>).
    /// </summary>
    private string UniqueTarget(string dir, string name, int extra)
    {
        name = Fitting(name, extra);
        string target = Path.Combine(dir, name), key = target;
        int i;
        if (_nextSuffix.TryGetValue(key, out int next)) i = next;
        else if (!Taken(target)) return target;   // a name of its own, as a camera's all are: two lookups
        else i = LastTakenSuffix(dir, name, extra) + 1;
        if (i > 1) target = Suffixed(dir, name, i - 1, extra);
        for (; Taken(target); i++) target = Suffixed(dir, name, i, extra);
        // Only names that needed a suffix are kept (a camera's are all new), and not without bound.
        if (i > 1)
        {
            if (_nextSuffix.Count >= MaxSuffixedNames) _nextSuffix.Clear();
            _nextSuffix[key] = i;
        }
        return target;
    }

    private static string Suffixed(string dir, string name, int i, int extra)
    {
        string suffix = string.Create(CultureInfo.InvariantCulture, $".{i}");
        string fitting = Fitting(name, extra + suffix.Length);
        return Path.Combine(dir, $"{Path.GetFileNameWithoutExtension(fitting)}{suffix}{Path.GetExtension(fitting)}");
    }

    /// <summary>Longest file name Linux file systems take (NAME_MAX), in bytes.</summary>
    private const int NameMax = 255;

    /// <summary>What a quarantined capture's name takes on besides: its reason file, written through a temporary beside it.</summary>
    private static readonly int ReasonBytes = Encoding.UTF8.GetByteCount(ReasonSuffix + ".tmp");

    /// <summary>Longest extension kept when a name is cut; a longer one is taken for part of the name.</summary>
    private const int MaxKeptExtensionBytes = 16;

    /// <summary>
    /// <paramref name="name"/>, or when it does not fit in NAME_MAX with <paramref name="extra"/> bytes added, its part
    /// before the extension cut at a whole character (the name stays UTF-8) so that it does. A name of 245 bytes and
    /// more went into the inbox and its claim, but its reason file (with the temporary it is written through) or its
    /// done name with a suffix did not: the write failed at every retry, and the capture was never quarantined or moved.
    /// </summary>
    private static string Fitting(string name, int extra)
    {
        int room = NameMax - extra;
        if (Encoding.UTF8.GetByteCount(name) <= room) return name;
        string extension = Path.GetExtension(name);
        if (Encoding.UTF8.GetByteCount(extension) > MaxKeptExtensionBytes) extension = "";
        int left = room - Encoding.UTF8.GetByteCount(extension);
        var kept = new StringBuilder(name.Length);
        foreach (Rune rune in name.AsSpan(0, name.Length - extension.Length).EnumerateRunes())
        {
            if ((left -= rune.Utf8SequenceLength) < 0) break;
            kept.Append(rune.ToString());
        }
        return kept.Append(extension).ToString();
    }

    // A quarantined capture's name is taken by its .reason too, which may be left without it.
    private static bool Taken(string target) => File.Exists(target) || File.Exists(target + ReasonSuffix);

    /// <summary>
    /// For a name that is taken: a suffix N that is taken with N + 1 free (0 for the name itself), in about 2·log2(N)
    /// lookups, doubling and then halving. A name's suffixes are taken in order, so this is the last one unless some
    /// were deleted, and any free one will do.
    /// </summary>
    private static int LastTakenSuffix(string dir, string name, int extra)
    {
        int taken = 0, free = 1;
        while (Taken(Suffixed(dir, name, free, extra)) && free < 1 << 30) (taken, free) = (free, free * 2);
        while (free - taken > 1)
        {
            int middle = taken + (free - taken) / 2;
            if (Taken(Suffixed(dir, name, middle, extra))) taken = middle;
            else free = middle;
        }
        return taken;
    }

    // Per name in a folder that needed a suffix, the suffix its next search starts at (UniqueTarget).
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, int> _nextSuffix = new(StringComparer.Ordinal);
    private const int MaxSuffixedNames = 10_000;
}
