using System.Diagnostics;

namespace QanaEdge.Daemon.Pipeline;

/// <summary>
/// Counters the watchdog reads: the pipeline is healthy when it has nothing to do, or when it finished something
/// recently. A wedged worker (work queued, nothing completing) stops the WATCHDOG=1 pings and systemd restarts us.
/// </summary>
public sealed class PipelineProgress
{
    private long _accepted, _completed, _rejected, _duplicates, _lastProgress = Stopwatch.GetTimestamp();

    public long Accepted => Interlocked.Read(ref _accepted);
    public long Completed => Interlocked.Read(ref _completed);
    public long Rejected => Interlocked.Read(ref _rejected);
    public long Duplicates => Interlocked.Read(ref _duplicates);
    public long Pending => Accepted - Completed - Rejected - Duplicates;

    public void OnAccepted() => Interlocked.Increment(ref _accepted);
    public void OnCompleted() { Interlocked.Increment(ref _completed); Touch(); }
    public void OnRejected() { Interlocked.Increment(ref _rejected); Touch(); }
    public void OnDuplicate() { Interlocked.Increment(ref _duplicates); Touch(); }
    private void Touch() => Interlocked.Exchange(ref _lastProgress, Stopwatch.GetTimestamp());

    /// <summary>True when idle or when something finished within <paramref name="window"/>.</summary>
    public bool IsHealthy(TimeSpan window) => Pending <= 0 || Stopwatch.GetElapsedTime(Interlocked.Read(ref _lastProgress)) < window;
}
