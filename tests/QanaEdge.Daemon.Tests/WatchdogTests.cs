using Microsoft.Extensions.Hosting.Systemd;
using Microsoft.Extensions.Logging.Abstractions;
using QanaEdge.Daemon.Hosting;
using QanaEdge.Daemon.Pipeline;

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

    [Fact]
    public async Task Pings_while_idle_or_progressing_and_stops_when_work_is_stuck()
    {
        var notifier = new RecordingNotifier();
        var progress = new PipelineProgress();
        var service = new WatchdogService(notifier, progress, NullLogger<WatchdogService>.Instance);
        using var cts = new CancellationTokenSource();
        Task loop = service.RunAsync(TimeSpan.FromMilliseconds(200), cts.Token);

        // Idle: pings every 100 ms (waiting on a condition, not a time: the machine may be busy).
        await Infrastructure.TestEnv.WaitUntil(() => notifier.Count >= 2, TimeSpan.FromSeconds(10), "two pings while idle");

        progress.OnAccepted(); // one capture taken and never finished: stuck
        await Task.Delay(300); // the last progress falls out of the 200 ms window
        int atStall = notifier.Count;
        await Task.Delay(500);
        Assert.Equal(atStall, notifier.Count);

        progress.OnCompleted(); // progress again: pings resume
        await Infrastructure.TestEnv.WaitUntil(() => notifier.Count > atStall, TimeSpan.FromSeconds(10), "pings to resume");
        // A snapshot: the loop is still pinging, and enumerating the live list raced with its Add.
        Assert.All(notifier.Snapshot(), s => Assert.Equal("WATCHDOG=1", s));
        cts.Cancel();
        await loop;
    }
}
