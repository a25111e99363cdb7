using Microsoft.Extensions.Hosting;
using QanaEdge.Daemon.Hosting;

namespace QanaEdge.Daemon.Tests.Infrastructure;

/// <summary>The daemon host run in-process with its own inbox and state folders.</summary>
public sealed class DaemonRunner : IAsyncDisposable
{
    private readonly IHost _host;

    public DaemonRunner(string root, int? brokerPort, string deviceId, DaemonHooks? hooks = null, params string[] extra)
    {
        DaemonHooks? outer = hooks;
        hooks = new DaemonHooks
        {
            CameraFactory = outer?.CameraFactory,
            GpioFactory = outer?.GpioFactory,
            Published = outer?.Published,
            Started = (pipeline, store) => { Pipeline = pipeline; Store = store; outer?.Started?.Invoke(pipeline, store); },
            LogSink = outer?.LogSink is { } sink ? new Tee(Log, sink) : Log,
        };
        Root = root;
        Inbox = Path.Combine(root, "inbox");
        StateDir = Path.Combine(root, "state");
        DeviceId = deviceId;
        var args = new List<string>
        {
            $"--Qana:Inbox={Inbox}", $"--Qana:StateDir={StateDir}", $"--Qana:DeviceId={deviceId}",
            "--Qana:RescanSeconds=0.5", "--Qana:Workers=2", $"--Qana:Model={TestModel.Path_}",
        };
        if (brokerPort is int port) args.AddRange([$"--Qana:Mqtt:Host=127.0.0.1", $"--Qana:Mqtt:Port={port}"]);
        args.AddRange(extra);
        _host = DaemonHost.Build([.. args], hooks);
    }

    public string Root { get; }
    public string Inbox { get; }
    public string StateDir { get; }
    public string DeviceId { get; }
    public string QuarantineDir => Path.Combine(StateDir, "quarantine");
    public string DoneDir => Path.Combine(StateDir, "done");
    public IServiceProvider Services => _host.Services;

    /// <summary>What the daemon logged.</summary>
    public LogCollector Log { get; } = new();

    /// <summary>The daemon's LiteDB store, once started.</summary>
    public QanaEdge.Daemon.Storage.ResultStore? Store { get; private set; }

    /// <summary>The daemon's capture pipeline, once started.</summary>
    public QanaEdge.Daemon.Pipeline.CapturePipeline? Pipeline { get; private set; }

    /// <summary>
    /// Waits until every one of <paramref name="files"/> is read and in the pipeline (its bytes held by the capture
    /// queue), where a fixed delay assumed the watcher had got to them.
    /// </summary>
    public Task AllQueuedAsync(IEnumerable<string> files) =>
        TestEnv.WaitUntil(() => Pipeline?.Input.HeldBytes == files.Sum(f => new FileInfo(f).Length), TimeSpan.FromSeconds(30),
            "every capture read and queued", () => $"{Pipeline?.Input.HeldBytes} bytes held");

    public async Task StartAsync() => await _host.StartAsync();

    public async Task StopAsync() => await _host.StopAsync();

    private sealed class Tee(Serilog.Core.ILogEventSink a, Serilog.Core.ILogEventSink b) : Serilog.Core.ILogEventSink
    {
        public void Emit(Serilog.Events.LogEvent logEvent) { a.Emit(logEvent); b.Emit(logEvent); }
    }

    public async ValueTask DisposeAsync()
    {
        try { await _host.StopAsync(); } catch (ObjectDisposedException) { }
        _host.Dispose();
    }
}
