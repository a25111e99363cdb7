using System.Device.Gpio;
using System.Reflection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using QanaEdge.Daemon.Capture;
using QanaEdge.Daemon.Classification;
using QanaEdge.Daemon.Configuration;
using QanaEdge.Daemon.Learning;
using QanaEdge.Daemon.Messaging;
using QanaEdge.Daemon.Pipeline;
using QanaEdge.Daemon.Power;
using QanaEdge.Daemon.Storage;
using QanaEdge.Daemon.Updates;
using QanaEdge.Devices.Camera;
using QanaEdge.Devices.Gpio;
using QanaEdge.Devices.Power;

namespace QanaEdge.Daemon.Hosting;

/// <summary>
/// Brings the daemon up in dependency order in <see cref="StartAsync"/> — store, model/engine, power, broker link,
/// pipeline, publisher, capture sources — so that the host's READY=1 (sent after every StartAsync returned) means
/// "model loaded, broker link set up". The link does not wait for the broker: results queue in the outbox.
/// Stops in reverse order, letting the pipeline store what it holds.
/// </summary>
public sealed class DaemonService(
    QanaOptions options,
    ModelAtStart model,
    LearnerKey learnerKey,
    DeviceTrust trust,
    EngineChoice engineChoice,
    PipelineProgress progress,
    ILoggerFactory loggers,
    IHostApplicationLifetime lifetime,
    DaemonHooks hooks) : IHostedService
{
    private readonly ILogger _log = loggers.CreateLogger<DaemonService>();
    private ResultStore? _store;
    private EnergyMeter? _meter;
    private EmbeddedBroker? _broker;
    private MqttLink? _link;
    private CapturePipeline? _pipeline;
    private CardFailover? _failover;
    private OutboxPublisher? _publisher;
    private ReadoutLearning? _learning;
    private InboundHandler? _inbound;
    private InboxWatcher? _watcher;
    private CaptureRetention? _retention;
    private ResultPruning? _pruning;
    private CameraTrigger? _camera;
    private Task? _telemetry;
    private string? _version;
    private CameraState? _cameraUnavailable;
    // Why a configured power sensor is not used (missing or refused at start), for the retained status; null when it is.
    private string? _powerProblem;
    private readonly CancellationTokenSource _stop = new();

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        string version = typeof(DaemonService).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "dev";
        var topics = new Topics(options.DeviceId);
        Directory.CreateDirectory(options.StateDir);
        _store = new ResultStore(Path.Combine(options.StateDir, "qana.db"));
        _log.LogInformation("qanad {Version}: device {DeviceId} ({DeviceIdSource}), state {StateDir}", version, options.DeviceId,
            options.DeviceIdSource, options.StateDir);
        if (_store.Recovery is { } recovery) _log.LogError("STORE: {Recovery}", recovery);
        _store.Recovered += found => _log.LogError("STORE: {Recovery} (found while running)", found);
        IClassifierProvider provider = model.Active.Provider;
        _log.LogWarning("ENGINE: {Engine} — {Reason}", provider.EngineName, provider.EngineReason);
        _log.LogInformation("Model {ModelId} version {ModelVersion}: {Source}", provider.ModelId, provider.ModelVersion, model.Active.Source);
        // Loud: the device runs another model than the one last applied to it.
        if (model.Problem is not null) _log.LogError("MODEL: {Problem}; running {ModelId} {ModelVersion} instead", model.Problem, provider.ModelId, provider.ModelVersion);

        IPowerSensor? sensor = null;
        try { sensor = PowerSetup.Open(options.Power); }
        catch (PowerSensorException e)
        {
            // Classifying is what the device is for; the energy per image is a measurement beside it. A configured sensor
            // that is missing or refuses its chip at start (a hwmon driver not loaded yet, a wrong address) kept the
            // daemon from starting, in a restart loop that classified nothing. It now runs without: energy_mj is null,
            // and the log and the retained status say why until a restart finds the sensor.
            _powerProblem = e.Message;
            _log.LogError("POWER: {Error}; running without a power sensor (energy_mj is null) until a restart finds it", e.Message);
        }
        if (sensor is not null)
        {
            _meter = new EnergyMeter(sensor, TimeSpan.FromMilliseconds(options.Power.SampleMilliseconds), options.Power.IdleSamples);
            _meter.ReadFailed += (e, failed) => _log.LogWarning("Power read failed ({Count} since the sensor last read steadily; reported at 1, 10, 100 ...): {Error}",
                failed, e.Message);
            _meter.ReadRecovered += failed => _log.LogWarning("Power sensor reads steadily again ({Seconds:0} s without a failure) after {Count} failed reads",
                _meter.SteadyAfter.TotalSeconds, failed);
            // Only now, with the handlers attached: a sensor failing from its first read is reported from that read on.
            if (options.Power.IdleWatts is double configuredIdle) _meter.SetIdle(configuredIdle);
            _meter.Start();
            _log.LogInformation("Power sensor {Sensor} (updates every {Interval} ms); energy per image above the idle baseline", sensor.Name, sensor.UpdateInterval.TotalMilliseconds);
            if (sensor.Calibration.Length > 0) _log.LogInformation("Power sensor {Sensor}: {Calibration}", sensor.Name, sensor.Calibration);
            await WaitForIdleBaselineAsync(_meter, cancellationToken).ConfigureAwait(false);
        }
        else _log.LogInformation("No power sensor configured: energy_mj is null");

        if (string.IsNullOrWhiteSpace(options.Mqtt.Host))
        {
            _broker = new EmbeddedBroker(options.Mqtt.Port, loggers.CreateLogger<EmbeddedBroker>());
            await _broker.StartAsync().ConfigureAwait(false);
        }
        _link = new MqttLink(options.Mqtt, options.DeviceId, loggers.CreateLogger<MqttLink>());
        var disposition = new CaptureDisposition(options, loggers.CreateLogger<CaptureDisposition>());
        _failover = new CardFailover(model.Active, engineChoice, TimeSpan.FromSeconds(options.Akida.RetrySeconds),
            loggers.CreateLogger<CardFailover>(), _stop.Token);
        // A card that did not pass its check at start: the model runs on the managed engine, and the card is tried again.
        _failover.FailedAtStart();
        _pipeline = new CapturePipeline(options, model.Active, _store, disposition, progress, _meter, loggers.CreateLogger<CapturePipeline>(), _failover);
        _publisher = new OutboxPublisher(_store, _link, options.Mqtt, loggers.CreateLogger<OutboxPublisher>());
        _publisher.Acknowledged += (id, landed) => hooks.OnPublished(id, landed);
        _publisher.DeadLettersChanged += PublishStatus;
        var updates = new ModelUpdates(model, options.StateDir, trust, engineChoice, loggers.CreateLogger<ModelUpdates>(), _failover);
        _learning = StartLearning(updates, topics);
        MqttLink link = _link;
        var inbound = new InboundHandler(topics, _store, () => _camera, updates, () => _learning?.Wake(),
            what => link.RedeliverLater(TimeSpan.FromSeconds(options.Mqtt.RedeliverSeconds), $"{what}; the broker sends it again on the next connection"),
            loggers.CreateLogger<InboundHandler>(), link.AcknowledgeAsync, TimeSpan.FromSeconds(options.Mqtt.UpdateApplySeconds));
        _inbound = inbound;
        inbound.Start();
        // After a swap the retained status names the model now running.
        model.Active.Changed += PublishStatus;
        _link.MessageReceived += inbound.Handle;
        // Made before the link starts, so that the first "online" status already has its summary; it starts checking below.
        if (options.MinFreeMegabytes > 0)
        {
            _retention = new CaptureRetention(options.Done == DonePolicy.Move ? options.DoneDir : null, options.QuarantineDir!, options.MinFreeMegabytes << 20,
                options.MaxFileBytes, loggers.CreateLogger<CaptureRetention>());
            // Operators see captures deleted for room, and a disk that stays short, in the retained status.
            _retention.Changed += PublishStatus;
        }
        // Made before the link starts too, for the same reason; its first pass is a minute after the start.
        if (options.KeepResultsDays > 0)
        {
            _pruning = new ResultPruning(_store, TimeSpan.FromDays(options.KeepResultsDays), loggers.CreateLogger<ResultPruning>(),
                storedPackages: updates.StoredPackages);
            _pruning.Pruned += pass => { if (pass.Deleted > 0) PublishStatus(); };
        }
        // The camera opens before the link starts so that the first "online" status already says how it is.
        if (options.Camera.Enabled) _camera = OpenCamera();
        _version = version;
        _link.Start(OnlineStatus);
        _pipeline.Start();
        _publisher.Start();

        _watcher = new InboxWatcher(options, _pipeline.Input, disposition, loggers.CreateLogger<InboxWatcher>());
        _pipeline.Released += _watcher.Release;
        if (_retention is { } retention)
        {
            _pipeline.Released += (_, _) => retention.Settled();
            retention.Start();
        }
        _watcher.Start();
        _pruning?.Start();
        if (_meter is not null) _telemetry = Task.Run(() => TelemetryAsync(topics, _stop.Token));

        lifetime.ApplicationStarted.Register(() => _log.LogInformation(
            "Ready: drop images into {Inbox}; results on {Topic} at {Host}:{Port}", options.Inbox, topics.Results, _link.Host, options.Mqtt.Port));
        hooks.OnStarted(_pipeline, _store);
    }

    /// <summary>
    /// Waits, before any capture source or worker starts, until the meter has its idle baseline (the median of its
    /// first IdleSamples readings), so that the baseline is the board at rest and not the board classifying a backlog
    /// (which would bias every energy_mj low). Bounded: a sensor that fails its reads delays the start by at most
    /// max(5 s, three times the nominal sampling time), and energy_mj stays null until the baseline is known. A baseline
    /// configured in Qana:Power:IdleWatts is used as it is, with no wait.
    /// </summary>
    private async Task WaitForIdleBaselineAsync(EnergyMeter meter, CancellationToken ct)
    {
        if (options.Power.IdleWatts is double configured)
        {
            _log.LogInformation("Idle power baseline {Watts:0.000} W from Qana:Power:IdleWatts (configured, not measured)", configured);
            return;
        }
        var period = TimeSpan.FromMilliseconds(Math.Max(options.Power.SampleMilliseconds, meter.UpdateInterval.TotalMilliseconds));
        TimeSpan bound = TimeSpan.FromTicks(Math.Max(TimeSpan.FromSeconds(5).Ticks, 3 * options.Power.IdleSamples * period.Ticks));
        var waited = System.Diagnostics.Stopwatch.StartNew();
        while (meter.IdleWatts is null && waited.Elapsed < bound)
            await Task.Delay(TimeSpan.FromMilliseconds(10), ct).ConfigureAwait(false);
        if (meter.IdleWatts is double idle)
            _log.LogInformation("Idle power baseline {Watts:0.000} W from {Samples} readings in {Seconds:0.0} s, before any capture", idle, options.Power.IdleSamples, waited.Elapsed.TotalSeconds);
        else
            _log.LogWarning("Idle power baseline not known after {Seconds:0.0} s ({Failures} failed reads); starting anyway, energy_mj is null until it is",
                waited.Elapsed.TotalSeconds, Interlocked.Read(ref meter.Failures));
    }

    /// <summary>The on-device readout learner, or null (and the log says why) when it is off.</summary>
    private ReadoutLearning? StartLearning(ModelUpdates updates, Topics topics)
    {
        if (!options.Learning.Enabled)
        {
            _log.LogInformation("Readout learning off (Qana:Learning:Enabled)");
            return null;
        }
        if (learnerKey.Key is not { } key)
        {
            _log.LogError("Readout learning off: no learner key ({Problem})", learnerKey.Problem);
            return null;
        }
        var learning = new ReadoutLearning(options.Learning, _store!, model.Active, updates, key, topics.Readouts, loggers.CreateLogger<ReadoutLearning>());
        learning.Queued += _publisher!.Wake;
        learning.Start();
        _log.LogInformation("Readout learning on: learner key {KeyId} ({Path}); first attempt at {MinCases} labelled cases, then every {NewCases} more",
            key.PublicKey.KeyIdHex[..16], learnerKey.Path, options.Learning.MinCases, options.Learning.NewCases);
        return learning;
    }

    private byte[] OnlineStatus()
    {
        IClassifierProvider provider = model.Active.Provider;
        return Payloads.Status("online", options.DeviceId, provider.EngineName, provider.EngineReason,
            provider.ModelId, provider.ModelVersion, _version, _camera?.State ?? _cameraUnavailable, model.Active.Source, learnerKey.Key?.PublicKey,
            DeadLetterCount(), _powerProblem, _retention?.Summary, _pruning?.Summary);
    }

    /// <summary>The dead letters' count for the status; none when the store cannot be read (the status goes out anyway).</summary>
    private int? DeadLetterCount()
    {
        try { return _store?.DeadLetterCount(); }
        catch (Exception e) when (ResultStore.IsStorageFailure(e) || e is ObjectDisposedException) { return null; }
    }

    private void PublishStatus()
    {
        if (_link is not { } link || _stop.IsCancellationRequested) return;
        try { _ = link.UpdateStatusAsync(_stop.Token); }
        catch (ObjectDisposedException) { } // a change that finished while the daemon stopped
    }

    private CameraTrigger? OpenCamera()
    {
        try
        {
            ICameraSource source = hooks.CameraFactory?.Invoke(options.Camera) ?? V4l2CameraSource.Open(options.Camera.Device, (uint)options.Camera.Width, (uint)options.Camera.Height, options.Camera.WarmupFrames);
            CaptureButton? button = null;
            if (options.Camera.ButtonPin >= 0)
            {
                try
                {
                    GpioController controller = hooks.GpioFactory?.Invoke() ?? new GpioController();
                    button = new CaptureButton(controller, options.Camera.ButtonPin, TimeSpan.FromMilliseconds(options.Camera.DebounceMilliseconds));
                }
                catch
                {
                    // The camera is reported unavailable below; its device is open already and would stay open (and
                    // its buffers mapped) until the process ends.
                    source.Dispose();
                    throw;
                }
            }
            _log.LogInformation("Camera {Camera}; triggers: {Button}MQTT {Topic}", source.Name,
                button is null ? "" : $"GPIO {options.Camera.ButtonPin}, ", new Topics(options.DeviceId).Capture);
            var trigger = new CameraTrigger(source, button, options.Inbox, loggers.CreateLogger<CameraTrigger>(),
                TimeSpan.FromSeconds(options.Camera.CaptureTimeoutSeconds), options.Camera.MaxBacklog);
            // Operators see a failing camera in the retained status, not only in the journal.
            trigger.StateChanged += _ => PublishStatus();
            return trigger;
        }
        catch (Exception e) when (e is CameraException or IOException or UnauthorizedAccessException or PlatformNotSupportedException or InvalidOperationException)
        {
            // The inbox keeps working without a camera; say why the camera does not.
            _log.LogError("Camera disabled: {Error}", e.Message);
            _cameraUnavailable = new CameraState($"camera {options.Camera.Device}", "unavailable", e.Message, DateTime.UtcNow);
            return null;
        }
    }

    private async Task TelemetryAsync(Topics topics, CancellationToken ct)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(options.Power.TelemetrySeconds));
        try
        {
            while (await timer.WaitForNextTickAsync(ct).ConfigureAwait(false))
            {
                if (_meter?.LastWithTime is not var (r, readAt) || _link is null || !_link.IsConnected) continue;
                try
                {
                    await _link.PublishAsync(topics.Power, Payloads.Power(_meter.SensorName, r.BusVolts, r.CurrentAmps, r.PowerWatts, _meter.IdleWatts,
                        Interlocked.Read(ref _meter.Failures), readAt), retain: false, ct).ConfigureAwait(false);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    _log.LogDebug("Power telemetry not sent: {Error}", e.Message);
                }
            }
        }
        catch (OperationCanceledException) { }
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        _log.LogInformation("Stopping: finishing captures in progress");
        _stop.Cancel();
        if (_watcher is not null) await _watcher.DisposeAsync().ConfigureAwait(false);
        _camera?.Dispose();
        // Before the pipeline and the store go: an update being applied swaps the model between images and records its outcome.
        if (_inbound is not null) await _inbound.DisposeAsync().ConfigureAwait(false);
        if (_pipeline is not null) await _pipeline.DisposeAsync().ConfigureAwait(false);
        if (_retention is not null) await _retention.DisposeAsync().ConfigureAwait(false);
        if (_learning is not null) await _learning.DisposeAsync().ConfigureAwait(false);
        if (_pruning is not null) await _pruning.DisposeAsync().ConfigureAwait(false);
        model.Active.Changed -= PublishStatus;
        if (_publisher is not null) await _publisher.DisposeAsync().ConfigureAwait(false);
        if (_telemetry is not null) { try { await _telemetry.ConfigureAwait(false); } catch (OperationCanceledException) { } }
        if (_link is not null) await _link.DisposeAsync().ConfigureAwait(false);
        if (_broker is not null) await _broker.DisposeAsync().ConfigureAwait(false);
        _meter?.Dispose();
        int queued = _store?.OutboxCount() ?? 0;
        if (queued > 0) _log.LogInformation("{Count} results stay in the outbox for the next start", queued);
        _store?.Dispose();
        // A try to give the model back to the card ends first (it may be programming the card), then, the workers
        // gone, the model's engine goes too (an Akida card is closed here, not left to process exit).
        if (_failover is not null) await _failover.StopAsync().ConfigureAwait(false);
        model.Active.Dispose();
        _stop.Dispose();
    }
}

/// <summary>Observation points and device factories the tests and the benchmark hook into; all optional.</summary>
public sealed class DaemonHooks
{
    public Func<CameraOptions, ICameraSource>? CameraFactory { get; init; }
    public Func<GpioController>? GpioFactory { get; init; }
    public Action<string, long>? Published { get; init; }
    public Action<CapturePipeline, ResultStore>? Started { get; init; }
    /// <summary>An extra log sink beside the console (tests read what the daemon logged).</summary>
    public Serilog.Core.ILogEventSink? LogSink { get; init; }
    internal void OnPublished(string resultId, long landed) => Published?.Invoke(resultId, landed);
    internal void OnStarted(CapturePipeline pipeline, ResultStore store) => Started?.Invoke(pipeline, store);
}
