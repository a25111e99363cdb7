using QanaEdge.Training.Engine;
using QanaEdge.Training.Network;

namespace QanaEdge.Training.Pipeline;

/// <summary>A snapshot of a network's parameters and BN running statistics (best epoch, checkpoints).</summary>
public sealed class NetState
{
    private readonly List<float[]> _arrays;
    private NetState(List<float[]> arrays) => _arrays = arrays;

    private static IEnumerable<float[]> Arrays(QanaNet net)
    {
        foreach (var layer in net.Layers)
        {
            foreach (var p in layer.Parameters) yield return p.Value;
            if (layer is BatchNorm bn) { yield return bn.RunningMean; yield return bn.RunningVar; }
        }
    }

    public static NetState Capture(QanaNet net) => new(Arrays(net).Select(a => (float[])a.Clone()).ToList());

    public void Restore(QanaNet net)
    {
        var targets = Arrays(net).ToList();
        if (targets.Count != _arrays.Count) throw new InvalidOperationException("snapshot does not fit this network");
        for (int i = 0; i < targets.Count; i++)
        {
            if (targets[i].Length != _arrays[i].Length) throw new InvalidOperationException("snapshot does not fit this network");
            _arrays[i].CopyTo(targets[i], 0);
        }
    }

    private const uint Magic = 0x4B434E51; // "QNCK"

    public void Save(string path)
    {
        using var w = new BinaryWriter(File.Create(path));
        w.Write(Magic); w.Write(_arrays.Count);
        foreach (var a in _arrays) { w.Write(a.Length); foreach (float f in a) w.Write(f); }
    }

    public static NetState Load(string path)
    {
        using var r = new BinaryReader(File.OpenRead(path));
        if (r.ReadUInt32() != Magic) throw new InvalidDataException($"{path}: not a QanaEdge checkpoint");
        int count = r.ReadInt32();
        var arrays = new List<float[]>(count);
        for (int i = 0; i < count; i++)
        {
            var a = new float[r.ReadInt32()];
            for (int j = 0; j < a.Length; j++) a[j] = r.ReadSingle();
            arrays.Add(a);
        }
        return new NetState(arrays);
    }
}
