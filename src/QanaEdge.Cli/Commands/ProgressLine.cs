namespace QanaEdge.Cli.Commands;

/// <summary>
/// Training progress on standard error: batch messages (those containing " batch ") redraw one live line with a
/// carriage return; every other message (a phase, an epoch's summary) gets a line of its own. Used by
/// <c>qana train</c> and <c>qana ablate</c>; thread-safe. Without <paramref name="live"/> (standard error is a file or a
/// pipe, where carriage returns would pile up hundreds of batch lines) batch messages are dropped.
/// </summary>
/// <param name="columns">The terminal's width (0: unknown): a live line is cut to one column less, since a carriage
/// return goes back only to the start of the last row a wrapped line took, and each redraw would leave a row behind.</param>
public sealed class ProgressLine(TextWriter err, bool live = true, int columns = 0)
{
    /// <summary>Whether <paramref name="err"/> can take a live line: anything but the process's redirected standard error.</summary>
    public static bool CanRedraw(TextWriter err) => !ReferenceEquals(err, Console.Error) || !Console.IsErrorRedirected;

    /// <summary>The width of the terminal standard error is on, or 0 when <paramref name="err"/> is not that or it cannot be read.</summary>
    public static int Columns(TextWriter err)
    {
        if (!ReferenceEquals(err, Console.Error) || Console.IsErrorRedirected) return 0;
        try { return Math.Max(0, Console.WindowWidth); }
        catch (Exception e) when (e is IOException or PlatformNotSupportedException or InvalidOperationException) { return 0; }
    }

    /// <summary>
    /// <paramref name="text"/> cut to one column less than a terminal of <paramref name="columns"/> (0: unknown, left
    /// whole): a line redrawn with a carriage return must not wrap, since the return goes back only to its last row.
    /// </summary>
    public static string Fit(string text, int columns) => columns > 1 && text.Length > columns - 1 ? text[..(columns - 1)] : text;

    private bool _open;
    /// <summary>How many characters the live line shows now: the next one is padded to cover them, and no further.</summary>
    private int _drawn;
    private readonly object _gate = new();

    public void Update(string text)
    {
        lock (_gate)
        {
            bool batch = text.Contains(" batch ", StringComparison.Ordinal);
            if (batch && !live) return;
            if (batch)
            {
                // Padded only over what the previous line showed: a fixed width of 110 wrapped on an 80-column terminal,
                // so every redraw left a row behind (a thousand rows a run) instead of replacing the line.
                string line = Fit(text, columns);
                err.Write("\r" + line.PadRight(_drawn));
                _drawn = line.Length;
                _open = true;
            }
            else { if (_open) err.WriteLine(); err.WriteLine(text); _open = false; _drawn = 0; }
            err.Flush();
        }
    }

    /// <summary>Ends the live line, if one is drawn, so what follows starts on a line of its own.</summary>
    public void Done() { lock (_gate) { if (_open) err.WriteLine(); _open = false; _drawn = 0; } }
}
