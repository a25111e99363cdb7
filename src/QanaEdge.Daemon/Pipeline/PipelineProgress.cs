namespace QanaEdge.Daemon.Pipeline;

/// <summary>
/// Counters the watchdog reads: the pipeline is healthy when it has nothing to do, or when it finished something
/// recently. A wedged worker (work queued, nothing completing) stops the WATCHDOG=1 pings and systemd restarts us.
/// A store writer that keeps retrying a commit the disk refuses is alive, not wedged: each attempt and each second of
/// its backoff counts as progress (a restart would not free the disk, and the docs promise that the daemon keeps
/// running and retries), and while it lasts the pipeline is <see cref="Degraded"/>.
/// </summary>
public sealed class PipelineProgress
{
    private readonly TimeProvider _time;
    private long _accepted, _completed, _rejected, _duplicates, _givenBack, _lastProgress;
    private string? _degraded;

    /// <param name="time">The clock progress is timed by: the system's, or a test's.</param>
    public PipelineProgress(TimeProvider? time = null)
    {
        _time = time ?? TimeProvider.System;
        _lastProgress = _time.GetTimestamp();
    }

    public long Accepted => Interlocked.Read(ref _accepted);
    public long Completed => Interlocked.Read(ref _completed);
    public long Rejected => Interlocked.Read(ref _rejected);
    public long Duplicates => Interlocked.Read(ref _duplicates);
    /// <summary>Captures given back to the inbox unclassified (taken for a file still being written), to be taken again later.</summary>
    public long GivenBack => Interlocked.Read(ref _givenBack);
    public long Pending => Accepted - Completed - Rejected - Duplicates - GivenBack;

    public void OnAccepted() => Interlocked.Increment(ref _accepted);
    public void OnCompleted() { Interlocked.Increment(ref _completed); Touch(); }
    public void OnRejected() { Interlocked.Increment(ref _rejected); Touch(); }
    public void OnDuplicate() { Interlocked.Increment(ref _duplicates); Touch(); }
    /// <summary>
    /// A worker is done with a capture it gave back unclassified. Counted, since the capture is accepted again as a new
    /// one when it is taken again: left out, it stayed pending for good and withheld WATCHDOG=1 once the device was idle.
    /// </summary>
    public void OnGivenBack() { Interlocked.Increment(ref _givenBack); Touch(); }
    /// <summary>Why the pipeline cannot finish work while it keeps trying (e.g. "degraded: disk full ..."), or null.</summary>
    public string? Degraded => Volatile.Read(ref _degraded);

    /// <summary>Raised when <see cref="Degraded"/> changes (the daemon's sd_notify STATUS follows it).</summary>
    public event Action<string?>? DegradedChanged;

    /// <summary>The store writer is alive and retrying a commit that failed (<paramref name="why"/>).</summary>
    public void OnStorageRetrying(string why)
    {
        Touch();
        if (!string.Equals(Interlocked.Exchange(ref _degraded, why), why, StringComparison.Ordinal)) DegradedChanged?.Invoke(why);
    }

    /// <summary>A commit succeeded: whatever kept the store from working is over.</summary>
    public void OnStored()
    {
        if (Interlocked.Exchange(ref _degraded, null) is not null) DegradedChanged?.Invoke(null);
    }

    private void Touch() => Interlocked.Exchange(ref _lastProgress, _time.GetTimestamp());

    /// <summary>True when idle or when something finished within <paramref name="window"/>.</summary>
    public bool IsHealthy(TimeSpan window) => Pending <= 0 || _time.GetElapsedTime(Interlocked.Read(ref _lastProgress)) < window;
}
