using System.Collections.Concurrent;
using System.Globalization;
using Serilog.Core;
using Serilog.Events;
using Serilog.Formatting.Display;

namespace QanaEdge.Daemon.Tests.Infrastructure;

/// <summary>Everything the daemon logged (level, class, rendered message), for tests that check what an operator would read.</summary>
public sealed class LogCollector : ILogEventSink
{
    // ":l" renders string values as they are, the way the console sink's ":lj" does, without quotes.
    private static readonly MessageTemplateTextFormatter Text = new("{Message:l}", CultureInfo.InvariantCulture);

    public ConcurrentQueue<(LogEventLevel Level, string Context, string Message)> Events { get; } = new();

    public void Emit(LogEvent logEvent)
    {
        string context = logEvent.Properties.TryGetValue("SourceContext", out LogEventPropertyValue? v) && v is ScalarValue { Value: string s }
            ? s[(s.LastIndexOf('.') + 1)..] : "";
        using var message = new StringWriter(CultureInfo.InvariantCulture);
        Text.Format(logEvent, message);
        Events.Enqueue((logEvent.Level, context, message.ToString()));
    }

    public IEnumerable<string> At(LogEventLevel level) => Events.Where(e => e.Level == level).Select(e => $"{e.Context}: {e.Message}");
}
