namespace QanaEdge.Cli.Commands;

/// <summary>
/// Training progress on standard error: batch messages (those containing " batch ") redraw one live line with a
/// carriage return; every other message (a phase, an epoch's summary) gets a line of its own. Used by
/// <c>qana train</c> and <c>qana ablate</c>; thread-safe. Without <paramref name="live"/> (standard error is a file or a
/// pipe, where carriage returns would pile up hundreds of batch lines) batch messages are dropped.
/// </summary>
public sealed class ProgressLine(TextWriter err, bool live = true)
{
    /// <summary>Whether <paramref name="err"/> can take a live line: anything but the process's redirected standard error.</summary>
    public static bool CanRedraw(TextWriter err) => !ReferenceEquals(err, Console.Error) || !Console.IsErrorRedirected;

    private bool _open;
    private readonly object _gate = new();

    public void Update(string text)
    {
        lock (_gate)
        {
            bool batch = text.Contains(" batch ", StringComparison.Ordinal);
            if (batch && !live) return;
            if (batch) { err.Write($"\r{text,-110}"); _open = true; }
            else { if (_open) err.WriteLine(); err.WriteLine(text); _open = false; }
            err.Flush();
        }
    }

    /// <summary>Ends the live line, if one is drawn, so what follows starts on a line of its own.</summary>
    public void Done() { lock (_gate) { if (_open) err.WriteLine(); _open = false; } }
}
