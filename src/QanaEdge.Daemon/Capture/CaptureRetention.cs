using System.Globalization;
using Microsoft.Extensions.Logging;
using QanaEdge.Daemon.Hosting;

namespace QanaEdge.Daemon.Capture;

/// <summary>
/// Keeps <c>Qana:MinFreeMegabytes</c> free on the disks of done/ and quarantine/ by deleting, oldest first, the captures
/// in done/, then the bytes of quarantined ones (their <c>.reason</c> stays, saying so), and last, on a disk still short,
/// those reasons (below). Under the default Move policy
/// every classified capture stayed in done/ for good, and every file a capture app leaves in the inbox that is not an
/// image (a sidecar, a thumbnail) in quarantine/: on a device's SD card that fills the disk in months, and then the
/// moves and the store's commits fail and the device classifies nothing until someone frees space (it says "degraded:
/// disk full", but a clinic device may go unvisited). The captures deleted from done/ are ones whose results are stored
/// (and published, or waiting in the outbox); each pass is a warning that names how many and from when to when.
/// <para>
/// Checked every <see cref="Period"/>, and after captures are settled (<see cref="Settled"/>) as often as the room
/// above the floor needs: each capture adds at most Qana:MaxFileBytes to either folder, so with N captures' worth of
/// room the next check is due after N of them (at every capture near the floor). A pass deletes until half as much
/// again as the floor is free, so that the folders are not read at every capture once the disk is near the floor. Quarantined bytes go only while done/ has nothing left to give on their disk, since a rejected capture is
/// what someone will want to look at; and only then, on a disk still short, the oldest <c>.reason</c> files whose capture's
/// bytes are gone (a flood of small files that are not images leaves a block's worth of reason for each: the journal has
/// each reason too). What went since the start is in the retained status (<see cref="Summary"/>).
/// </para>
/// </summary>
public sealed class CaptureRetention : IAsyncDisposable
{
    public static readonly TimeSpan Period = TimeSpan.FromSeconds(30);

    private readonly long _minFreeBytes, _maxCaptureBytes;
    private readonly ILogger<CaptureRetention> _log;
    private readonly Func<string, long> _freeBytes;
    private readonly Tier[] _tiers;
    private readonly Lock _gate = new();
    private readonly CancellationTokenSource _stop = new();
    private Task? _loop;
    private long _failedChecks;
    private RetentionSummary _summary;
    // Captures settled since the last check, and how many may be before the next one is due (Settled).
    private long _settled, _checkAfter = 1;

    /// <param name="doneDir">done/, or null when captures are deleted once stored (Qana:Done=Delete).</param>
    /// <param name="maxCaptureBytes">
    /// The most one capture adds to either folder: Qana:MaxFileBytes. A larger file is quarantined unread, by a rename that
    /// adds nothing on one mount; across mounts it is copied, and only the periodic check sees what it took.
    /// </param>
    /// <param name="freeBytes">The bytes free on a folder's disk; by default what statfs says an unprivileged user may use.</param>
    public CaptureRetention(string? doneDir, string quarantineDir, long minFreeBytes, long maxCaptureBytes, ILogger<CaptureRetention> log,
        Func<string, long>? freeBytes = null)
    {
        _minFreeBytes = minFreeBytes;
        _maxCaptureBytes = Math.Max(1, maxCaptureBytes);
        _log = log;
        _freeBytes = freeBytes ?? (dir => new DriveInfo(dir).AvailableFreeSpace);
        var quarantine = new Tier("QUARANTINE", quarantineDir,
            new Phase(IsCapture, "the bytes of its {0} oldest quarantined captures", "their .reason files stay", MarkDeleted),
            new Phase(IsReasonOfDeleted, "the .reason files of its {0} oldest quarantined captures whose bytes were gone", "the journal has each reason (\"Quarantined ...\")", null));
        _tiers = doneDir is null ? [quarantine] : [new Tier("DONE", doneDir, new Phase(IsCapture, "its {0} oldest captures", "their results stay in the store", null)), quarantine];
        _summary = new RetentionSummary(minFreeBytes >> 20, 0, 0, 0, null, Short: false);
    }

    /// <summary>What went since the start, and whether a disk stays under the floor: the retained status's <c>retention</c>.</summary>
    public RetentionSummary Summary => Volatile.Read(ref _summary);

    /// <summary>Raised after a check that changed <see cref="Summary"/> (captures deleted, or a disk gone short or back), on the checking thread.</summary>
    public event Action? Changed;

    /// <summary>Starts the periodic check, which catches a disk filled by anything else (the store, the journal).</summary>
    public void Start() => _loop = Task.Run(() => LoopAsync(_stop.Token));

    /// <summary>
    /// A capture was settled (moved to done/ or quarantine/, or deleted): a check when one is due. Called on the
    /// acknowledger's task (and a worker's, for a quarantine), so no capture is moved in between a check and the
    /// deletions it calls for. Between checks it costs an increment; a check (two statfs, about 6 µs) is due only as
    /// often as the room above the floor needs.
    /// </summary>
    public void Settled()
    {
        if (Interlocked.Increment(ref _settled) >= Volatile.Read(ref _checkAfter)) Check();
    }

    /// <summary>One check, with its failure logged (at the 1st, 10th, 100th ... in a row) rather than thrown.</summary>
    public void Check()
    {
        lock (_gate)
        {
            Interlocked.Exchange(ref _settled, 0);
            try
            {
                PruneIfLow();
                _failedChecks = 0;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                if (Logging.IsReported(++_failedChecks))
                    _log.LogWarning("RETENTION: cannot check or prune done/ and quarantine/: {Error} ({Count} in a row; reported at 1, 10, 100 ...)", e.Message, _failedChecks);
            }
        }
    }

    private async Task LoopAsync(CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            Check();
            try { await Task.Delay(Period, ct).ConfigureAwait(false); }
            catch (OperationCanceledException) { return; }
        }
    }

    /// <summary>
    /// One pass over done/ and then quarantine/: in a folder whose disk has less than the floor free, deletes the oldest
    /// captures (by their time stamp, which a move keeps: the capture's own) until half as much again is free or none is
    /// left. A disk still short once both had their turn is a warning (at the 1st, 10th, 100th ... check in a row).
    /// Returns how many captures were deleted; throws when a folder or its free space cannot be read.
    /// </summary>
    public int PruneIfLow()
    {
        int deleted = 0;
        foreach (Tier tier in _tiers)
        {
            // A folder not made yet (the first capture moved there makes it) has nothing to give, but its room is that
            // of the folder it will be made in.
            bool exists = Directory.Exists(tier.Dir);
            string? parent = exists ? tier.Dir : Path.GetDirectoryName(Path.TrimEndingDirectorySeparator(tier.Dir));
            long free = parent is not null && Directory.Exists(parent) ? _freeBytes(parent) : long.MaxValue;
            tier.Free = free;
            tier.WasLow = exists && free < _minFreeBytes;
            if (tier.WasLow) deleted += Prune(tier, free);
        }
        long room = long.MaxValue;
        bool isShort = false;
        foreach (Tier tier in _tiers)
        {
            // Measured again: quarantine/ on done/'s disk may have made the room done/ could not.
            long free = tier.WasLow ? _freeBytes(tier.Dir) : tier.Free;
            room = Math.Min(room, free - _minFreeBytes);
            if (free >= _minFreeBytes) { tier.ShortChecks = 0; continue; }
            isShort = true;
            if (!Logging.IsReported(++tier.ShortChecks)) continue;
            string cannot = tier.Failed > 0 ? $"; {tier.Failed} could not be deleted: {tier.Failure}" : "";
            _log.LogWarning("{Tier}: {Free} MB free on the disk of {Dir}, under Qana:MinFreeMegabytes ({Min} MB), and nothing more there to delete{Cannot} " +
                "({Count} checks in a row; reported at 1, 10, 100 ...)", tier.Label, free >> 20, tier.Dir, _minFreeBytes >> 20, cannot, tier.ShortChecks);
        }
        Volatile.Write(ref _checkAfter, Math.Max(1, room / _maxCaptureBytes));
        Summarize(deleted, isShort);
        return deleted;
    }

    private void Summarize(int deleted, bool isShort)
    {
        RetentionSummary last = Summary;
        if (deleted == 0 && isShort == last.Short) return;
        Phase[] quarantine = _tiers[^1].Phases;
        Volatile.Write(ref _summary, last with
        {
            DeletedFromDone = _tiers.Length > 1 ? _tiers[0].Phases[0].Total : 0,
            DeletedFromQuarantine = quarantine[0].Total,
            ReasonsDeleted = quarantine[1].Total,
            LastDeletedAtUtc = deleted > 0 ? DateTime.UtcNow : last.LastDeletedAtUtc,
            Short = isShort,
        });
        Changed?.Invoke();
    }

    private int Prune(Tier tier, long free)
    {
        long wanted = _minFreeBytes + _minFreeBytes / 2 - free, freed = 0;
        int deleted = 0;
        (tier.Failed, tier.Failure) = (0, null);
        // Temporary names (a cross-mount copy in progress: CaptureDisposition.CopyPrefix) are left alone.
        FileInfo[] files = new DirectoryInfo(tier.Dir).EnumerateFiles().Where(f => !f.Name.StartsWith('.')).ToArray();
        foreach (Phase phase in tier.Phases)
        {
            if (freed >= wanted) break;
            int count = 0;
            DateTime first = default, last = default;
            long phaseFreed = 0;
            // Lazily filtered: a reason's capture deleted by the phase before is gone by the time the next looks.
            foreach (FileInfo file in files.Where(phase.Takes).OrderBy(f => f.LastWriteTimeUtc).ThenBy(f => f.Name, StringComparer.Ordinal).ToArray())
            {
                if (freed >= wanted) break;
                try
                {
                    // What the file holds on the disk: at least a block (a reason of 200 bytes frees 4 KiB).
                    long held = (file.Length + BlockBytes - 1) & ~(BlockBytes - 1);
                    file.Delete();
                    freed += held;
                    phaseFreed += held;
                    if (count++ == 0) first = file.LastWriteTimeUtc;
                    last = file.LastWriteTimeUtc;
                    phase.Deleted?.Invoke(file.FullName);
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    tier.Failed++;   // gone meanwhile, or not ours to delete (a read-only disk, another owner)
                    tier.Failure ??= e.Message;
                }
            }
            if (count == 0) continue;
            phase.Total += count;
            deleted += count;
            _log.LogWarning("{Tier}: {Free} MB free on the disk of {Dir}, under Qana:MinFreeMegabytes ({Min} MB): deleted {What} ({Freed} MB, written {First:u} to {Last:u}); {Kept}",
                tier.Label, free >> 20, tier.Dir, _minFreeBytes >> 20, string.Format(CultureInfo.InvariantCulture, phase.What, count), phaseFreed >> 20, first, last, phase.Kept);
        }
        return deleted;
    }

    /// <summary>The allocation unit assumed for a file's last block (ext4's and most SD cards' FAT clusters at this size).</summary>
    private const long BlockBytes = 4096;

    /// <summary>A capture, in done/ or quarantine/: not a reason (in done/ too, should it be the quarantine folder as well).</summary>
    private static bool IsCapture(FileInfo f) => !f.Name.EndsWith(CaptureDisposition.ReasonSuffix, StringComparison.Ordinal);

    /// <summary>A reason whose capture's bytes are gone: deleted for room, or never moved there (a FIFO, a device).</summary>
    private static bool IsReasonOfDeleted(FileInfo f) =>
        f.Name.EndsWith(CaptureDisposition.ReasonSuffix, StringComparison.Ordinal) && !File.Exists(f.FullName[..^CaptureDisposition.ReasonSuffix.Length]);

    /// <summary>A quarantined capture's .reason says that its bytes are gone, and why; on a disk that cannot take the line, it stays as it was.</summary>
    private static void MarkDeleted(string capture)
    {
        try
        {
            File.AppendAllText(capture + CaptureDisposition.ReasonSuffix, string.Create(CultureInfo.InvariantCulture,
                $"deleted_at: {DateTime.UtcNow:O} (the capture's bytes, to keep Qana:MinFreeMegabytes free)\n"));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        if (_loop is not null) await _loop.ConfigureAwait(false);
        _stop.Dispose();
    }

    /// <summary>One folder, and what it gives up, in order.</summary>
    private sealed class Tier(string label, string dir, params Phase[] phases)
    {
        public string Label => label;
        public string Dir => dir;
        public Phase[] Phases => phases;
        public long Free;
        public bool WasLow;
        public long ShortChecks;
        public int Failed;
        public string? Failure;
    }

    /// <summary>Which files of a folder go, what the warning says of them, and what follows each deletion.</summary>
    private sealed class Phase(Func<FileInfo, bool> takes, string what, string kept, Action<string>? deleted)
    {
        public Func<FileInfo, bool> Takes => takes;
        public string What => what;
        public string Kept => kept;
        public Action<string>? Deleted => deleted;
        public long Total;
    }
}

/// <summary>
/// The free-space floor as the retained status reports it: captures deleted from done/ and bytes of quarantined ones,
/// and reasons, since the daemon started; when the last went; and whether a disk is under the floor with nothing more
/// to delete (the device will soon fail to settle captures).
/// </summary>
public sealed record RetentionSummary(long MinFreeMegabytes, long DeletedFromDone, long DeletedFromQuarantine, long ReasonsDeleted, DateTime? LastDeletedAtUtc, bool Short);
