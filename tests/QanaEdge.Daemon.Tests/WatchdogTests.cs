using Microsoft.Extensions.Hosting.Systemd;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using QanaEdge.Daemon.Hosting;
using QanaEdge.Daemon.Pipeline;
using QanaEdge.Daemon.Tests.Infrastructure;

namespace QanaEdge.Daemon.Tests;

public sealed class WatchdogTests
{
    private sealed class RecordingNotifier : ISystemdNotifier
    {
        public List<string> States { get; } = [];
        public bool IsEnabled => true;
        public void Notify(ServiceState state) { lock (States) States.Add(state.ToString()); }
        public int Count { get { lock (States) return States.Count; } }
        public string[] Snapshot() { lock (States) return [.. States]; }
    }

    /// <summary>
    /// The decision at each beat, on a clock the test moves: pings while idle; a capture taken and never finished stops
    /// them once nothing has finished for the interval (one error, however many beats it lasts); a finished capture
    /// brings them back. A store writer retrying a full disk counts as progress.
    /// </summary>
    [Fact]
    public void Pings_while_idle_or_progressing_and_stops_when_work_is_stuck()
    {
        var notifier = new RecordingNotifier();
        var time = new FakeTimeProvider();
        var progress = new PipelineProgress(time);
        var log = new RecordingLogger<WatchdogService>();
        var service = new WatchdogService(notifier, progress, log);
        TimeSpan interval = TimeSpan.FromSeconds(2), beat = interval / 2;

        Assert.True(service.Beat(interval));   // idle
        progress.OnAccepted();                 // one capture taken and never finished
        time.Advance(beat);
        Assert.True(service.Beat(interval));   // 1 s since the last progress: still within the interval
        time.Advance(beat);
        for (int i = 0; i < 5; i++, time.Advance(beat)) Assert.False(service.Beat(interval));
        Assert.Equal(1, log.Count("Pipeline stalled: 1 captures pending and nothing finished for 2 s"));

        progress.OnStorageRetrying("degraded: disk full, retrying to store results");   // alive, retrying
        Assert.True(service.Beat(interval));
        Assert.Equal(1, log.Count("Pipeline progressing again"));
        time.Advance(interval);
        Assert.False(service.Beat(interval));
        progress.OnCompleted();
        Assert.True(service.Beat(interval));
        Assert.Equal(Enumerable.Repeat("WATCHDOG=1", 4), notifier.Snapshot());
    }

    /// <summary>The loop beats at half the interval on the real clock (waiting on a count, not a time).</summary>
    [Fact]
    public async Task The_loop_pings_at_half_the_interval_until_stopped()
    {
        var notifier = new RecordingNotifier();
        var service = new WatchdogService(notifier, new PipelineProgress(), NullLogger<WatchdogService>.Instance);
        using var cts = new CancellationTokenSource();
        Task loop = service.RunAsync(TimeSpan.FromMilliseconds(200), cts.Token);
        await Infrastructure.TestEnv.WaitUntil(() => notifier.Count >= 3, TimeSpan.FromSeconds(10), "three pings while idle");
        cts.Cancel();
        await loop;
        // A snapshot: enumerating the live list raced with the loop's Add.
        Assert.All(notifier.Snapshot(), s => Assert.Equal("WATCHDOG=1", s));
    }
}
