using QanaEdge.Model;
using QanaEdge.Training.Engine;
using QanaEdge.Training.Network;

namespace QanaEdge.Training.Pipeline;

/// <summary>A snapshot of a network's parameters and BN running statistics (best epoch, checkpoints).</summary>
public sealed class NetState
{
    private readonly List<float[]> _arrays;
    private NetState(List<float[]> arrays) => _arrays = arrays;

    private static IEnumerable<float[]> Arrays(QanaNet net) => Named(net).Select(a => a.Values);

    /// <summary>The arrays of <see cref="Arrays"/> with a name each (parameter name, or the batch norm's statistic).</summary>
    private static IEnumerable<(string Name, float[] Values)> Named(QanaNet net)
    {
        foreach (var layer in net.Layers)
        {
            foreach (var p in layer.Parameters) yield return (p.Name, p.Value);
            if (layer is BatchNorm bn) { yield return ($"{layer.Name}.running_mean", bn.RunningMean); yield return ($"{layer.Name}.running_var", bn.RunningVar); }
        }
    }

    public static NetState Capture(QanaNet net) => new(Arrays(net).Select(a => (float[])a.Clone()).ToList());

    public void Restore(QanaNet net)
    {
        if (Misfit(net) is { } misfit) throw new InvalidOperationException($"snapshot does not fit this network ({misfit})");
        var targets = Arrays(net).ToList();
        for (int i = 0; i < targets.Count; i++) _arrays[i].CopyTo(targets[i], 0);
    }

    /// <summary>How the snapshot differs in shape from <paramref name="net"/>'s arrays, or null when it fits.</summary>
    private string? Misfit(QanaNet net)
    {
        var targets = Named(net).ToList();
        for (int i = 0; i < Math.Min(targets.Count, _arrays.Count); i++)
        {
            if (targets[i].Values.Length == _arrays[i].Length) continue;
            string what = $"'{targets[i].Name}' has {targets[i].Values.Length} values in the network, {_arrays[i].Length} in the checkpoint";
            // The head is the usual suspect: a flattened head holds FinalSize² times the weights of a pooled one.
            if (targets[i].Values == net.Head.Weight.Value)
            {
                long cells = (long)net.FinalSize * net.FinalSize;
                if (!net.Options.PooledHead && _arrays[i].Length * cells == targets[i].Values.Length) what += ": the checkpoint has a pooled head (trained with --pooled-head)";
                if (net.Options.PooledHead && targets[i].Values.Length * cells == _arrays[i].Length) what += ": the checkpoint has a flattened head (trained without --pooled-head)";
            }
            return what;
        }
        return targets.Count == _arrays.Count ? null : $"{_arrays.Count} arrays in the checkpoint, {targets.Count} in the network";
    }

    private const uint Magic = 0x4B434E51; // "QNCK"

    public void Save(string path)
    {
        var bytes = new MemoryStream();
        using (var w = new BinaryWriter(bytes))
        {
            w.Write(Magic); w.Write(_arrays.Count);
            foreach (var a in _arrays) { w.Write(a.Length); foreach (float f in a) w.Write(f); }
        }
        // Whole or not at all: a run stopped mid-write (a kill, a full disk) keeps the last checkpoint, not a cut one.
        WholeFile.Write(Path.GetFullPath(path), bytes.ToArray(), WholeFileOptions.UserOutput);
    }

    /// <summary>Reads a checkpoint written by <see cref="Save"/>.</summary>
    /// <exception cref="InvalidDataException">Not a checkpoint, or truncated or damaged; the message names the file.</exception>
    public static NetState Load(string path)
    {
        using var r = new BinaryReader(File.OpenRead(path));
        long length = r.BaseStream.Length;
        if (length < 8 || r.ReadUInt32() != Magic) throw new InvalidDataException($"checkpoint '{path}' is not a QanaEdge float checkpoint");
        int count = r.ReadInt32();
        if (count < 0 || count > (length - 8) / 4) throw new InvalidDataException($"checkpoint '{path}' is truncated or damaged: it claims {count} arrays in {length} bytes");
        var arrays = new List<float[]>(count);
        for (int i = 0; i < count; i++)
        {
            long left = length - r.BaseStream.Position;
            int n = left >= 4 ? r.ReadInt32() : -1;
            if (n < 0 || 4L * n > left - 4)
                throw new InvalidDataException($"checkpoint '{path}' is truncated or damaged: it ends inside array {i + 1} of {count} ({length} bytes)");
            var a = new float[n];
            for (int j = 0; j < a.Length; j++) a[j] = r.ReadSingle();
            arrays.Add(a);
        }
        if (r.BaseStream.Position != length)
            throw new InvalidDataException($"checkpoint '{path}' is damaged: {length - r.BaseStream.Position} bytes follow its last array");
        return new NetState(arrays);
    }

    /// <summary>
    /// Reads a checkpoint and checks that it fits <paramref name="net"/> array by array, so that a wrong file is refused
    /// before any image is loaded. The network is only read, not changed.
    /// </summary>
    /// <exception cref="InvalidDataException">Not a checkpoint, truncated, or written for another architecture; the
    /// message names the file and the first array that differs.</exception>
    public static NetState LoadFor(string path, QanaNet net)
    {
        NetState state = Load(path);
        if (state.Misfit(net) is { } misfit)
            throw new InvalidDataException($"checkpoint '{path}' does not fit the network these options build ({misfit}); " +
                "a checkpoint resumes only the architecture that wrote it: the same --input-size, --pooled-head, --baseline, --no-ghost, --no-eca and --no-se");
        return state;
    }
}
