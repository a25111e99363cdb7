using QanaEdge.Daemon.Storage;
using QanaEdge.Model;

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
/// fsync, rename, fsync of the folder, and of its parent at a process's first change, until that flush succeeds), so a power cut
/// leaves either the old state or the new one. Packages no
/// longer named are removed afterwards. <paramref name="syncFolder"/> stands in for the folder flush
/// (<see cref="DurableFile.SyncDirectory"/>) in tests.
/// </summary>
public sealed class AppliedUpdates(string dir, Action<string>? syncFolder = null)
{
    private readonly WholeFileOptions _durable = DurableFile.Options(syncFolder);
    // Whether the parent folder, which holds this folder's entry, was flushed in this process (Commit).
    private bool _entryFlushed;

    private const string Header = "qana-applied-updates v1";

    public sealed record State(string? Model, IReadOnlyList<string> Readouts)
    {
        public static readonly State None = new(null, []);
        public bool IsEmpty => Model is null && Readouts.Count == 0;
        public bool Contains(string sha) => Model == sha || Readouts.Contains(sha);
        /// <summary>The packages in the order they apply: the model update, if any, then the readouts as applied.</summary>
        public IEnumerable<string> InOrder => Model is null ? Readouts : Readouts.Prepend(Model);
    }

    public string Directory => dir;
    private string ActivePath => Path.Combine(dir, "active");

    public string PackagePath(string sha) => Path.Combine(dir, sha + ".qana");

    /// <summary>The SHA-256 names of every package file in the folder, whether <c>active</c> names it or not.</summary>
    public IEnumerable<string> StoredPackages() =>
        System.IO.Directory.Exists(dir) ? System.IO.Directory.GetFiles(dir, "*.qana").Select(file => Path.GetFileNameWithoutExtension(file)).Order(StringComparer.Ordinal) : [];

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
    /// <returns>
    /// Null when the new state is on the disk. Otherwise a durability warning: <c>active</c> was renamed into place, so
    /// the new state is in effect and is what the next start reads, but the folder could not be flushed afterwards, so
    /// a power cut before the kernel writes it out may bring the previous state back.
    /// </returns>
    /// <exception cref="IOException">The new state was not stored (<c>active</c> still names the previous one).</exception>
    public string? Commit(State state, string sha, byte[] package)
    {
        if (!_entryFlushed)
        {
            System.IO.Directory.CreateDirectory(dir);
            // The new folder's entry lives in its parent, which no later flush touches: without this a power cut could
            // take the folder, with the package and active the flushes below put in it, and the update with it. Flushed
            // until one flush succeeded in this process, not only by the commit that made the folder: when that flush
            // failed, the retry found the folder in place, skipped it, and reported the update applied and durable.
            _durable.SyncFolder?.Invoke(Path.GetDirectoryName(Path.GetFullPath(dir))!);
            _entryFlushed = true;
        }
        // A failure here, the folder flushes included, leaves active naming the previous state: the update is not stored.
        WholeFile.Write(PackagePath(sha), package, _durable);
        var text = new System.Text.StringBuilder(Header).Append('\n');
        if (state.Model is not null) text.Append("model ").Append(state.Model).Append('\n');
        foreach (string r in state.Readouts) text.Append("readout ").Append(r).Append('\n');
        try { WholeFile.Write(ActivePath, System.Text.Encoding.ASCII.GetBytes(text.ToString()), _durable); }
        catch (FolderSyncException e)
        {
            // The rename happened: from here on the new state is the one in effect, so this is no refusal. The flush
            // is not retried: after a failed fsync Linux may report the next one clean although the data never
            // reached the disk, so a retry would only hide the doubt. Nothing is pruned either: should a power cut
            // bring the previous active back, the packages it names must still be there.
            return e.Message;
        }
        Prune(state);
        return null;
    }

    /// <summary>
    /// Removes the packages <paramref name="state"/> does not name: a replaced model, readouts of an older model,
    /// learned readouts a later one superseded (<see cref="ModelUpdates"/> drops them from the state), a package
    /// written before a crash, and the temporary file of a write a crash interrupted. Called only once the state naming what stays is on the disk, so a crash part way
    /// loses nothing needed: what is left over is removed at the next change. Nothing else on the device reads these
    /// files: a failed swap programs the previous model back from memory, and a start whose applied updates fail runs
    /// the configured package, which is not kept here.
    /// </summary>
    private void Prune(State state)
    {
        // Temporary files too: a kill or power cut during a write leaves {sha}.qana.tmp (or active.tmp) behind, and
        // unlike active.tmp a package's temporary name is reused only if the same package comes again, so it stayed
        // for good. Only this class writes here, one change at a time, so none of them is being written now.
        IEnumerable<string> stale = System.IO.Directory.GetFiles(dir, "*.qana")
            .Where(file => !state.Contains(Path.GetFileNameWithoutExtension(file)))
            .Concat(System.IO.Directory.GetFiles(dir, "*.tmp"));
        foreach (string file in stale)
        {
            try { File.Delete(file); } catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        }
    }
}
