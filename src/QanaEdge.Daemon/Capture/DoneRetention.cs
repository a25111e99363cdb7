using Microsoft.Extensions.Logging;
using QanaEdge.Daemon.Hosting;

namespace QanaEdge.Daemon.Capture;

/// <summary>
/// Keeps <c>Qana:DoneMinFreeMegabytes</c> free on the done folder's file system by deleting the oldest captures there.
/// Under the default Move policy every classified capture stays in done/ for good, and on a device's SD card that fills
/// the disk in months: the store's commits then fail and the device classifies nothing until someone frees space (it
/// says "degraded: disk full", but a clinic device may go unvisited). The captures deleted are ones whose results are
/// stored (and published, or waiting in the outbox); each pass is a warning that names how many and from when to when.
/// <para>
/// Checked every <see cref="Period"/> and after each capture is settled (<see cref="Check"/>). A pass deletes until
/// half as much again as the floor is free, so that the folder is not read at every capture once the disk is near the
/// floor.
/// </para>
/// </summary>
public sealed class DoneRetention(string doneDir, long minFreeBytes, ILogger<DoneRetention> log, Func<string, long>? freeBytes = null) : IAsyncDisposable
{
    public static readonly TimeSpan Period = TimeSpan.FromSeconds(30);

    private readonly Func<string, long> _freeBytes = freeBytes ?? (dir => new DriveInfo(dir).AvailableFreeSpace);
    private readonly Lock _gate = new();
    private readonly CancellationTokenSource _stop = new();
    private Task? _loop;
    private long _emptyPasses, _failedChecks;

    /// <summary>Starts the periodic check, which catches a disk filled by anything else (the store, the journal).</summary>
    public void Start() => _loop = Task.Run(() => LoopAsync(_stop.Token));

    /// <summary>
    /// One check, with its failure logged (at the 1st, 10th, 100th ... in a row) rather than thrown. Called after each
    /// capture is settled, on the acknowledger's task: one statfs while there is room, and no capture is moved in
    /// between a check and the deletions it calls for.
    /// </summary>
    public void Check()
    {
        lock (_gate)
        {
            try
            {
                PruneIfLow();
                _failedChecks = 0;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                if (Logging.IsReported(++_failedChecks))
                    log.LogWarning("DONE: cannot check or prune {Dir}: {Error} ({Count} in a row; reported at 1, 10, 100 ...)", doneDir, e.Message, _failedChecks);
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
    /// One pass: when less than the floor is free, deletes the oldest captures (by their time stamp, which a move keeps:
    /// the capture's own) until half as much again is free or none is left. Returns how many were deleted; throws when
    /// the folder or its free space cannot be read.
    /// </summary>
    public int PruneIfLow()
    {
        if (!Directory.Exists(doneDir)) return 0;   // made at the first capture moved there
        long free = _freeBytes(doneDir);
        if (free >= minFreeBytes) return 0;

        long wanted = minFreeBytes + minFreeBytes / 2 - free, freed = 0;
        int deleted = 0, failed = 0;
        string? failure = null;
        DateTime first = default, last = default;
        // Temporary names (a cross-mount copy in progress: CaptureDisposition.CopyPrefix) are left alone.
        FileInfo[] oldestFirst = new DirectoryInfo(doneDir).EnumerateFiles()
            .Where(f => !f.Name.StartsWith('.'))
            .OrderBy(f => f.LastWriteTimeUtc).ThenBy(f => f.Name, StringComparer.Ordinal).ToArray();
        foreach (FileInfo file in oldestFirst)
        {
            if (freed >= wanted) break;
            try
            {
                long length = file.Length;
                file.Delete();
                freed += length;
                if (deleted++ == 0) first = file.LastWriteTimeUtc;
                last = file.LastWriteTimeUtc;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                failed++;   // gone meanwhile, or not ours to delete (a read-only disk, another owner)
                failure ??= e.Message;
            }
        }
        if (deleted > 0)
        {
            _emptyPasses = 0;
            log.LogWarning("DONE: {Free} MB free on the disk of {Dir}, under Qana:DoneMinFreeMegabytes ({Min} MB): deleted its {Count} oldest captures " +
                "({Freed} MB, written {First:u} to {Last:u}); their results stay in the store",
                free >> 20, doneDir, minFreeBytes >> 20, deleted, freed >> 20, first, last);
        }
        else if (Logging.IsReported(++_emptyPasses))
        {
            if (failed > 0)
                log.LogWarning("DONE: {Free} MB free on the disk of {Dir}, under Qana:DoneMinFreeMegabytes ({Min} MB), and its captures cannot be deleted " +
                    "({Failed} failed: {Error}) ({Count} checks in a row; reported at 1, 10, 100 ...)", free >> 20, doneDir, minFreeBytes >> 20, failed, failure, _emptyPasses);
            else
                log.LogWarning("DONE: {Free} MB free on the disk of {Dir}, under Qana:DoneMinFreeMegabytes ({Min} MB), and no capture left there to delete " +
                    "({Count} checks in a row; reported at 1, 10, 100 ...)", free >> 20, doneDir, minFreeBytes >> 20, _emptyPasses);
        }
        return deleted;
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        if (_loop is not null) await _loop.ConfigureAwait(false);
        _stop.Dispose();
    }
}
