using QanaEdge.Model.Graph;

namespace QanaEdge.Runtime.Plan;

/// <summary>
/// The memory of one execution: an int8 arena where tensors with disjoint lifetimes share bytes, the
/// readout's int32 counts, and per-layer event counters. Everything is allocated at prepare time.
/// </summary>
internal sealed class ExecState
{
    public readonly sbyte[] Arena;
    public readonly int[] Offset;
    public readonly int[] Length;
    public readonly int[] Counts;
    public readonly long[] LayerEvents;

    public ExecState(BufferPlan plan, int countsLength, int nodeCount)
    {
        Arena = new sbyte[plan.ArenaBytes];
        Offset = plan.Offsets;
        Length = plan.Lengths;
        Counts = new int[countsLength];
        LayerEvents = new long[nodeCount];
    }

    public Span<sbyte> Tensor(int index) => Arena.AsSpan(Offset[index], Length[index]);
}

/// <summary>
/// Static buffer plan: each int8 tensor lives from the node that writes it to the last node that reads it;
/// tensors whose lifetimes do not overlap share arena bytes (first fit, 64-byte aligned).
/// </summary>
internal sealed class BufferPlan
{
    public required int[] Offsets { get; init; }
    public required int[] Lengths { get; init; }
    public required int ArenaBytes { get; init; }
    /// <summary>True for tensors whose bytes are still theirs after a run (never overwritten later).</summary>
    public required bool[] Intact { get; init; }

    private const int Align = 64;
    /// <summary>Vector kernels may read up to one vector past a tensor's last pixel (lanes they discard).</summary>
    private const int Slack = 64;

    public static BufferPlan Create(ModelGraph graph, bool reuse, IReadOnlySet<int> retained)
    {
        int n = graph.Tensors.Length;
        var def = new int[n];
        var last = new int[n];
        Array.Fill(def, int.MaxValue);
        def[graph.InputTensor] = -1;
        for (int i = 0; i < graph.Nodes.Length; i++)
        {
            var node = graph.Nodes[i];
            def[node.Output] = Math.Min(def[node.Output], i);
            foreach (int t in node.Inputs) last[t] = Math.Max(last[t], i);
        }
        for (int t = 0; t < n; t++)
        {
            last[t] = Math.Max(last[t], def[t]);
            if (!reuse || retained.Contains(t) || t == graph.LogitsTensor || t == graph.OutputTensor || t == graph.InputTensor)
                last[t] = int.MaxValue;  // lives to the end of the run (and after it)
        }

        var lengths = new int[n];
        var offsets = new int[n];
        var placed = new List<int>();
        int arena = 0;
        var order = Enumerable.Range(0, n).Where(t => def[t] != int.MaxValue && graph.Tensors[t].Type == DataType.Int8)
            .OrderBy(t => def[t]).ToArray();
        foreach (int t in order)
        {
            int len = graph.Tensors[t].Length;
            lengths[t] = len;
            var conflicts = placed.Where(o => def[o] <= last[t] && def[t] <= last[o])
                .Select(o => (Start: offsets[o], End: offsets[o] + Round(lengths[o]))).OrderBy(c => c.Start).ToList();
            int candidate = 0;
            foreach (var c in conflicts)
            {
                if (candidate + Round(len) <= c.Start) break;
                candidate = Math.Max(candidate, c.End);
            }
            offsets[t] = candidate;
            arena = Math.Max(arena, candidate + Round(len));
            placed.Add(t);
        }
        var intact = new bool[n];
        for (int t = 0; t < n; t++) intact[t] = last[t] == int.MaxValue;
        return new BufferPlan { Offsets = offsets, Lengths = lengths, ArenaBytes = arena + Slack, Intact = intact };
    }

    private static int Round(int len) => (len + Align - 1) / Align * Align;
}
