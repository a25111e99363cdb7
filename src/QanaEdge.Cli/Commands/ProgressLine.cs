namespace QanaEdge.Cli.Commands;

/// <summary>
/// Training progress on standard error: batch messages (those containing " batch ") redraw one live line with a
/// carriage return; every other message (a phase, an epoch's summary) gets a line of its own. Used by
/// <c>qana train</c> and <c>qana ablate</c>; thread-safe.
/// </summary>
public sealed class ProgressLine(TextWriter err)
{
    private bool _open;
    private readonly object _gate = new();

    public void Update(string text)
    {
        lock (_gate)
        {
            bool live = text.Contains(" batch ", StringComparison.Ordinal);
            if (live) { err.Write($"\r{text,-110}"); _open = true; }
            else { if (_open) err.WriteLine(); err.WriteLine(text); _open = false; }
            err.Flush();
        }
    }

    /// <summary>Ends the live line, if one is drawn, so what follows starts on a line of its own.</summary>
    public void Done() { lock (_gate) { if (_open) err.WriteLine(); _open = false; } }
}
