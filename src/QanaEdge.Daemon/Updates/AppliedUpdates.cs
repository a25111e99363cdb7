using QanaEdge.Daemon.Storage;

namespace QanaEdge.Daemon.Updates;

/// <summary>
/// What survives a restart of the updates applied on this device, under <c>{StateDir}/models/</c>: each applied
/// package's signed bytes as received, named by their SHA-256 (<c>{sha}.qana</c>), and one small text file,
/// <c>active</c>, naming the model update in use (if any) and the readout updates applied on top of it, in order:
/// <code>
/// qana-applied-updates v1
/// model 3f2a...          (absent: the firmware / Qana:Model package)
/// readout 9b41...
/// </code>
/// A change writes the new package first, then replaces <c>active</c>; both writes are durable (temporary file,
/// fsync, rename, fsync of the folder), so a power cut leaves either the old state or the new one. Packages no
/// longer named are removed afterwards.
/// </summary>
public sealed class AppliedUpdates(string dir)
{
    private const string Header = "qana-applied-updates v1";

    public sealed record State(string? Model, IReadOnlyList<string> Readouts)
    {
        public static readonly State None = new(null, []);
        public bool IsEmpty => Model is null && Readouts.Count == 0;
        public bool Contains(string sha) => Model == sha || Readouts.Contains(sha);
    }

    public string Directory => dir;
    private string ActivePath => Path.Combine(dir, "active");

    public string PackagePath(string sha) => Path.Combine(dir, sha + ".qana");

    /// <summary>The recorded state (<see cref="State.None"/> when nothing was ever applied).</summary>
    /// <exception cref="InvalidDataException">The state file is damaged (the message says how).</exception>
    public State Read()
    {
        if (!File.Exists(ActivePath)) return State.None;
        string[] lines = File.ReadAllLines(ActivePath);
        if (lines.Length == 0 || lines[0] != Header) throw new InvalidDataException($"{ActivePath}: not a '{Header}' file");
        string? model = null;
        var readouts = new List<string>();
        foreach (string line in lines.Skip(1))
        {
            string[] parts = line.Split(' ');
            if (parts.Length != 2 || parts[1].Length != 64 || !parts[1].All(char.IsAsciiHexDigitLower))
                throw new InvalidDataException($"{ActivePath}: bad line '{line}'");
            if (parts[0] == "model" && model is null && readouts.Count == 0) model = parts[1];
            else if (parts[0] == "readout") readouts.Add(parts[1]);
            else throw new InvalidDataException($"{ActivePath}: bad line '{line}'");
        }
        return new State(model, readouts);
    }

    /// <summary>Stores <paramref name="package"/> (the signed bytes, as <paramref name="sha"/>) and makes <paramref name="state"/> the applied state.</summary>
    public void Commit(State state, string sha, byte[] package)
    {
        System.IO.Directory.CreateDirectory(dir);
        DurableFile.WriteAllBytes(PackagePath(sha), package);
        var text = new System.Text.StringBuilder(Header).Append('\n');
        if (state.Model is not null) text.Append("model ").Append(state.Model).Append('\n');
        foreach (string r in state.Readouts) text.Append("readout ").Append(r).Append('\n');
        DurableFile.WriteAllBytes(ActivePath, System.Text.Encoding.ASCII.GetBytes(text.ToString()));
        // Leftovers (a replaced model, readouts of an older model, a package written before a crash) go last: the
        // state named above no longer needs them.
        foreach (string file in System.IO.Directory.GetFiles(dir, "*.qana"))
            if (!state.Contains(Path.GetFileNameWithoutExtension(file)))
            {
                try { File.Delete(file); } catch (IOException) { }
            }
    }
}
