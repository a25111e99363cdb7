using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace QanaEdge.Daemon.Tests.Infrastructure;

/// <summary>An <see cref="ILogger{T}"/> that keeps each rendered line with its level, for a part of the daemon built without its host.</summary>
public sealed class RecordingLogger<T> : ILogger<T>
{
    public ConcurrentQueue<(LogLevel Level, string Message)> Lines { get; } = new();

    public int Count(string text) => Lines.Count(l => l.Message.Contains(text, StringComparison.Ordinal));

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
    public bool IsEnabled(LogLevel logLevel) => true;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        => Lines.Enqueue((logLevel, formatter(state, exception)));
}
