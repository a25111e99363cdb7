using Microsoft.Extensions.Logging;

namespace QanaEdge.Daemon.Storage;

/// <summary>
/// Deletes from the store, once a day, the results stored more than <c>Qana:KeepResultsDays</c> ago that the device no
/// longer needs: delivered to the broker and not labelled by a clinician (<see cref="ResultStore.PruneResults"/>). A
/// result with its rendered payload and head input is 1–2 kB, and the store kept every one: a device that classifies
/// a few hundred images a day grew its store by a hundred MB and more a year, on the disk it shares with captures,
/// until it was full. LiteDB reuses the pages of deleted documents, so once results older than the period are deleted
/// as fast as new ones arrive the file stops growing (it does not shrink).
/// <para>
/// The first pass runs <see cref="FirstDelay"/> after the start, when a backlog of captures at start has had the store
/// to itself; a pass the store fails is tried again after <see cref="RetryDelay"/>.
/// </para>
/// </summary>
public sealed class ResultPruning : IAsyncDisposable
{
    /// <summary>Time between passes.</summary>
    public static readonly TimeSpan Period = TimeSpan.FromDays(1);

    /// <summary>Time from the start to the first pass.</summary>
    public static readonly TimeSpan FirstDelay = TimeSpan.FromMinutes(1);

    /// <summary>Time from a pass the store failed to the next try.</summary>
    public static readonly TimeSpan RetryDelay = TimeSpan.FromHours(1);

    /// <summary>Results looked at under one hold of the store's lock.</summary>
    public const int BatchSize = 500;

    private readonly ResultStore _store;
    private readonly TimeSpan _keep;
    private readonly ILogger _log;
    private readonly TimeProvider _time;
    private readonly CancellationTokenSource _stop = new();
    private Task? _loop;
    // Read by the status from other threads: the time as ticks (0: none yet), so that each is one atomic read.
    private long _deleted, _lastDeletedTicks;

    /// <param name="keep">How long a result is kept after it was stored (at least this long: passes are a day apart).</param>
    /// <param name="storedPackages">
    /// The SHA-256 names of the update packages under the state folder, whose learned entries in the update log are kept
    /// (<see cref="ResultStore.PruneLearnedEntries"/>); none when null.
    /// </param>
    public ResultPruning(ResultStore store, TimeSpan keep, ILogger<ResultPruning> log, TimeProvider? time = null,
        Func<IReadOnlySet<string>>? storedPackages = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(keep, TimeSpan.Zero);
        _store = store;
        _keep = keep;
        _log = log;
        _time = time ?? TimeProvider.System;
        _storedPackages = storedPackages ?? (() => new HashSet<string>());
    }

    private readonly Func<IReadOnlySet<string>> _storedPackages;

    /// <summary>Raised after each pass, with what it did (the daemon publishes its status again after one that deleted).</summary>
    public event Action<PruneBatch>? Pruned;

    /// <summary>The period and what the passes deleted since the start, for the retained status.</summary>
    public PruningSummary Summary => new(_keep.TotalDays, Interlocked.Read(ref _deleted),
        Interlocked.Read(ref _lastDeletedTicks) is > 0 and var ticks ? new DateTime(ticks, DateTimeKind.Utc) : null);

    public void Start() => _loop = Task.Run(() => LoopAsync(_stop.Token));

    private async Task LoopAsync(CancellationToken ct)
    {
        try
        {
            TimeSpan wait = FirstDelay;
            while (true)
            {
                await Task.Delay(wait, _time, ct).ConfigureAwait(false);
                wait = Period;
                try { RunOnce(ct); }
                catch (Exception e) when (ResultStore.IsStorageFailure(e))
                {
                    _log.LogWarning("STORE: deleting results older than {Days} days failed: {Error}; tried again in {Hours} h", _keep.TotalDays, e.Message, RetryDelay.TotalHours);
                    wait = RetryDelay;
                }
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested) { }
    }

    /// <summary>One pass, batch after batch until the results older than the period are all looked at; returns the totals.</summary>
    public PruneBatch RunOnce(CancellationToken ct = default)
    {
        DateTime storedBefore = _time.GetUtcNow().UtcDateTime - _keep;
        int deleted = 0, kept = 0;
        while (!ct.IsCancellationRequested)
        {
            // The kept ones stay the oldest: the next batch starts past them.
            PruneBatch batch = _store.PruneResults(storedBefore, kept, BatchSize);
            deleted += batch.Deleted;
            kept += batch.Kept;
            if (batch.Deleted + batch.Kept < BatchSize) break;
        }
        // The update log's entries of learned readouts, one per readout the device learned (or had refused), grew for
        // as long as it learned: they go after the same period, once delivered and no longer under the state folder.
        if (!ct.IsCancellationRequested)
        {
            int learned = _store.PruneLearnedEntries(storedBefore, _storedPackages());
            if (learned > 0)
                _log.LogInformation("STORE: deleted {Deleted} update-log entries of learned readouts recorded before {Before:u} (delivered, no longer applied; Qana:KeepResultsDays {Days})",
                    learned, storedBefore, _keep.TotalDays);
        }
        var total = new PruneBatch(deleted, kept);
        if (deleted > 0)
        {
            Interlocked.Add(ref _deleted, deleted);
            Interlocked.Exchange(ref _lastDeletedTicks, _time.GetUtcNow().UtcTicks);
        }
        _log.Log(deleted > 0 ? LogLevel.Information : LogLevel.Debug,
            "STORE: deleted {Deleted} results stored before {Before:u} (delivered, not labelled; Qana:KeepResultsDays {Days}); {Kept} older ones kept, unsent or labelled",
            deleted, storedBefore, _keep.TotalDays, kept);
        Pruned?.Invoke(total);
        return total;
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        if (_loop is not null) await _loop.ConfigureAwait(false);
        _stop.Dispose();
    }
}

/// <summary>
/// What <see cref="ResultPruning"/> did since the daemon started: the period it keeps results for, how many it deleted,
/// and when it last deleted any (null before).
/// </summary>
public sealed record PruningSummary(double KeepDays, long DeletedResults, DateTime? LastDeletedAtUtc);
