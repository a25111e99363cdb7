using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Hosting.Systemd;
using QanaEdge.Daemon.Classification;
using QanaEdge.Daemon.Configuration;
using QanaEdge.Daemon.Learning;
using QanaEdge.Daemon.Pipeline;
using QanaEdge.Daemon.Updates;
using QanaEdge.Imaging;
using Serilog;
using Serilog.Events;

namespace QanaEdge.Daemon.Hosting;

/// <summary>Builds the qanad host: configuration, validation, logging, systemd integration, the daemon service.</summary>
public static class DaemonHost
{
    /// <summary>
    /// Configuration sources, later ones win: appsettings.json beside the executable, /etc/qanad/appsettings.json,
    /// environment variables (QANA__MQTT__HOST is Qana:Mqtt:Host), then the command line (--Qana:Key=value).
    /// </summary>
    /// <exception cref="ConfigurationException">One or more bad keys (one message each).</exception>
    /// <exception cref="ModelUnavailableException">No usable model package.</exception>
    public static IHost Build(string[] args, DaemonHooks? hooks = null)
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings
        {
            Args = args,
            ContentRootPath = AppContext.BaseDirectory,
            ApplicationName = "qanad",
        });
        builder.Configuration
            .AddJsonFile(Path.Combine(AppContext.BaseDirectory, "appsettings.json"), optional: true, reloadOnChange: false)
            .AddJsonFile("/etc/qanad/appsettings.json", optional: true, reloadOnChange: false)
            .AddEnvironmentVariables()
            .AddCommandLine(args);
        QanaOptions options = OptionsLoader.Load(builder.Configuration);
        // Before anything in the state folder is read or written: a second daemon on it stops here (exit 1).
        StateLock stateLock = StateLock.Acquire(options.StateDir);

        // Serilog:MinimumLevel (env Serilog__MinimumLevel=Warning) quiets the per-result lines on a busy device.
        LogEventLevel minimum = Enum.TryParse(builder.Configuration["Serilog:MinimumLevel"], ignoreCase: true, out LogEventLevel level) ? level : LogEventLevel.Information;
        Serilog.Core.Logger logger = Logging.Create(minimum, hooks?.LogSink);
        builder.Services.AddSerilog(logger, dispose: true);
        // A misspelt key left its option at the default without a word; warned about, not refused, so that a key an
        // older release read, left in a file, does not stop a device.
        foreach (string key in OptionsLoader.UnknownKeys(builder.Configuration))
            logger.ForContext(typeof(OptionsLoader)).Warning("Configuration key {Key} is read by no option and is ignored (the keys are listed in docs/daemon.md, Configuration)", key);

        EngineChoice choice = EngineSelector.Choose(options.Engine, options.Akida.DevDir, library: options.Akida.Library)
            with { Classifier = new ClassifierOptions { Symmetries = options.Fallback == ViewFallback.Symmetries } };
        // Before the model: readouts this device learned earlier are verified with its learner key when they are restored.
        LearnerKey learner;
        try { learner = LearnerKey.Open(options.Learning); }
        catch { logger.Dispose(); stateLock.Dispose(); throw; }
        var trust = new DeviceTrust(options.TrustDir, learner.Key?.PublicKey);
        ModelAtStart model;
        try { model = ModelUpdates.Start(options, trust, choice); }
        catch { learner.Dispose(); logger.Dispose(); stateLock.Dispose(); throw; }

        // Made by a factory, so that the container disposes it (and so releases the folder) with the host; resolved below.
        builder.Services.AddSingleton(_ => stateLock);
        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton(choice);
        builder.Services.AddSingleton(model);
        builder.Services.AddSingleton(learner);
        builder.Services.AddSingleton(trust);
        builder.Services.AddSingleton(hooks ?? new DaemonHooks());
        builder.Services.AddSingleton<PipelineProgress>();
        // The notifier is harmless without NOTIFY_SOCKET (IsEnabled is false); the systemd lifetime, which sends
        // READY=1 once every hosted service has started and STOPPING=1 on shutdown, is used whenever systemd (or a
        // test standing in for it) gave us a notify socket.
        builder.Services.AddSingleton<ISystemdNotifier, SystemdNotifier>();
        if (SystemdHelpers.IsSystemdService() || !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("NOTIFY_SOCKET")))
            builder.Services.AddSingleton<IHostLifetime, SystemdLifetime>();
        builder.Services.AddHostedService<DaemonService>();
        builder.Services.AddHostedService<WatchdogService>();
        builder.Services.Configure<HostOptions>(o =>
        {
            o.ShutdownTimeout = TimeSpan.FromSeconds(20);
            o.ServicesStartConcurrently = false;
        });
        IHost host = builder.Build();
        host.Services.GetRequiredService<StateLock>();
        return host;
    }
}
