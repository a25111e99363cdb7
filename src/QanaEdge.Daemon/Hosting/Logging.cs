using System.Globalization;
using Serilog;
using Serilog.Core;
using Serilog.Events;
using Serilog.Sinks.SystemConsole.Themes;

namespace QanaEdge.Daemon.Hosting;

/// <summary>
/// Serilog configured in code (no configuration-driven sink loading, which needs reflection: AOT clean).
/// Under systemd (JOURNAL_STREAM set) every line starts with the sd-daemon priority prefix (&lt;3&gt; error,
/// &lt;4&gt; warning, &lt;6&gt; info, &lt;7&gt; debug) so journald files it at the right level and no time stamp is
/// written (journald adds its own); otherwise plain console lines with a time stamp.
/// </summary>
public static class Logging
{
    public static bool UnderJournald => !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("JOURNAL_STREAM"));

    /// <summary>
    /// Whether the <paramref name="inARow"/>-th failure in a row of something retried for as long as it fails is
    /// logged: the 1st, 10th, 100th ... A missing inbox or an unreadable outbox would otherwise log at every retry,
    /// for hours.
    /// </summary>
    public static bool IsReported(long inARow)
    {
        if (inARow < 1) return false;
        while (inARow % 10 == 0) inARow /= 10;
        return inARow == 1;
    }

    public static Logger Create(LogEventLevel minimum = LogEventLevel.Information, ILogEventSink? extraSink = null)
    {
        var config = new LoggerConfiguration()
            .MinimumLevel.Is(minimum)
            .MinimumLevel.Override("Microsoft", LogEventLevel.Warning)
            .MinimumLevel.Override("Microsoft.Hosting.Lifetime", LogEventLevel.Information)
            .Enrich.With<ShortContextEnricher>();
        if (UnderJournald)
        {
            config = config.Enrich.With<SyslogPriorityEnricher>()
                .WriteTo.Console(outputTemplate: "<{SyslogPriority}>{Context}: {Message:lj}{NewLine}{Exception}",
                    formatProvider: CultureInfo.InvariantCulture, theme: ConsoleTheme.None);
        }
        else
        {
            config = config.WriteTo.Console(outputTemplate: "{Timestamp:HH:mm:ss.fff} {Level:u3} {Context}: {Message:lj}{NewLine}{Exception}",
                formatProvider: CultureInfo.InvariantCulture, theme: ConsoleTheme.None, standardErrorFromLevel: LogEventLevel.Fatal);
        }
        if (extraSink is not null) config = config.WriteTo.Sink(extraSink);
        return config.CreateLogger();
    }

    /// <summary>Adds SyslogPriority: the sd-daemon(3) level number for the event.</summary>
    private sealed class SyslogPriorityEnricher : ILogEventEnricher
    {
        private static readonly LogEventProperty[] ByLevel =
        [
            new("SyslogPriority", new ScalarValue(7)), // Verbose → debug
            new("SyslogPriority", new ScalarValue(7)), // Debug
            new("SyslogPriority", new ScalarValue(6)), // Information → info
            new("SyslogPriority", new ScalarValue(4)), // Warning
            new("SyslogPriority", new ScalarValue(3)), // Error → err
            new("SyslogPriority", new ScalarValue(2)), // Fatal → crit
        ];

        public void Enrich(LogEvent logEvent, ILogEventPropertyFactory propertyFactory)
            => logEvent.AddPropertyIfAbsent(ByLevel[(int)logEvent.Level]);
    }

    /// <summary>Adds Context: the last segment of SourceContext (the class name), to keep lines short.</summary>
    private sealed class ShortContextEnricher : ILogEventEnricher
    {
        public void Enrich(LogEvent logEvent, ILogEventPropertyFactory propertyFactory)
        {
            string context = "qanad";
            if (logEvent.Properties.TryGetValue("SourceContext", out LogEventPropertyValue? v) && v is ScalarValue { Value: string s })
                context = s[(s.LastIndexOf('.') + 1)..];
            logEvent.AddPropertyIfAbsent(new LogEventProperty("Context", new ScalarValue(context)));
        }
    }
}
