using System.Globalization;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Hosting.Systemd;
using Microsoft.Extensions.Logging;
using QanaEdge.Daemon.Pipeline;

namespace QanaEdge.Daemon.Hosting;

/// <summary>
/// Sends WATCHDOG=1 at half the WatchdogSec interval systemd gave us (WATCHDOG_USEC), but only while the pipeline is
/// healthy: idle, or finishing work (a store writer retrying a full disk counts: <see cref="PipelineProgress"/>). A
/// wedged pipeline stops the pings and systemd restarts the service. Also sends STATUS= while the pipeline is degraded.
/// </summary>
public sealed class WatchdogService(ISystemdNotifier notifier, PipelineProgress progress, ILogger<WatchdogService> log) : BackgroundService
{
    // Whether the last beat withheld its ping (so that a stall is an error once, and its end said once).
    private bool _stalled;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        // STATUS= (systemctl status shows it) says when the pipeline is degraded, watchdog or not.
        if (notifier.IsEnabled)
        {
            progress.DegradedChanged += NotifyStatus;
            stoppingToken.Register(() => progress.DegradedChanged -= NotifyStatus);
        }
        string? usec = Environment.GetEnvironmentVariable("WATCHDOG_USEC");
        if (!notifier.IsEnabled || usec is null || !long.TryParse(usec, NumberStyles.Integer, CultureInfo.InvariantCulture, out long us) || us <= 0)
            return;
        // WATCHDOG_PID, when set, names the process the watchdog is meant for.
        string? pid = Environment.GetEnvironmentVariable("WATCHDOG_PID");
        if (pid is not null && pid != Environment.ProcessId.ToString(CultureInfo.InvariantCulture)) return;
        await RunAsync(TimeSpan.FromMicroseconds(us), stoppingToken).ConfigureAwait(false);
    }

    /// <summary>Sends STATUS=<paramref name="degraded"/>, or STATUS=running once it is over.</summary>
    public void NotifyStatus(string? degraded)
    {
        notifier.Notify(new ServiceState("STATUS=" + (degraded ?? "running")));
        if (degraded is null) log.LogInformation("Pipeline no longer degraded");
        else log.LogWarning("Pipeline {Degraded}", degraded);
    }

    /// <summary>The ping loop for a watchdog interval; returns when the token fires.</summary>
    public async Task RunAsync(TimeSpan interval, CancellationToken stoppingToken)
    {
        log.LogInformation("systemd watchdog: {Seconds} s, pinging every {Half} s while the pipeline makes progress", interval.TotalSeconds, interval.TotalSeconds / 2);
        using var timer = new PeriodicTimer(interval / 2);
        do Beat(interval);
        while (await Tick(timer, stoppingToken).ConfigureAwait(false));
    }

    /// <summary>
    /// One look at the pipeline: WATCHDOG=1 when it is healthy within <paramref name="interval"/>; otherwise nothing,
    /// and an error the first time. Returns whether it pinged. The loop calls it at every half interval.
    /// </summary>
    public bool Beat(TimeSpan interval)
    {
        if (progress.IsHealthy(interval))
        {
            notifier.Notify(new ServiceState("WATCHDOG=1"));
            if (_stalled) log.LogInformation("Pipeline progressing again");
            _stalled = false;
            return true;
        }
        if (!_stalled)
        {
            _stalled = true;
            log.LogError("Pipeline stalled: {Pending} captures pending and nothing finished for {Seconds} s; withholding WATCHDOG=1", progress.Pending, interval.TotalSeconds);
        }
        return false;
    }

    private static async Task<bool> Tick(PeriodicTimer timer, CancellationToken ct)
    {
        try { return await timer.WaitForNextTickAsync(ct).ConfigureAwait(false); }
        catch (OperationCanceledException) { return false; }
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        try { await base.StopAsync(cancellationToken).ConfigureAwait(false); }
        catch (OperationCanceledException) { }
    }
}
