namespace QanaEdge.Training.Engine;

/// <summary>
/// A differentiable operation, llm.c style: Forward computes its output (into a buffer it owns and
/// reuses) and, when training, records itself on the tape; Backward reads its output's gradient and
/// ACCUMULATES into its inputs' and parameters' gradients. The tape runs backward in reverse order.
/// </summary>
public abstract class Layer
{
    public string Name { get; }
    protected Layer(string name) => Name = name;

    /// <summary>Trainable parameters (empty for parameter-free layers).</summary>
    public virtual IEnumerable<Parameter> Parameters => [];

    /// <summary>Accumulates gradients into inputs and parameters from the output gradient.</summary>
    public abstract void Backward();

    public override string ToString() => $"{GetType().Name} {Name}";
}

/// <summary>The record of one forward pass: the layers to run backward, and the mode.</summary>
public sealed class Tape
{
    private readonly List<Layer> _ops = new(256);
    private readonly HashSet<Parameter> _params = [];
    private readonly List<Parameter> _touched = new(128);

    /// <summary>True: batch statistics, dropout and recording for backward. False: inference.</summary>
    public bool Training { get; set; }
    /// <summary>Seed of the dropout masks of this step (set by the trainer per step).</summary>
    public ulong Step { get; set; }

    /// <summary>When set, per-layer forward/backward wall times (ms) are accumulated here (diagnostics).</summary>
    public Dictionary<string, (double Forward, double Backward)>? Profile { get; set; }
    private long _last = System.Diagnostics.Stopwatch.GetTimestamp();

    public void Record(Layer layer)
    {
        if (Profile is not null)
        {
            long now = System.Diagnostics.Stopwatch.GetTimestamp();
            var key = layer.GetType().Name + (layer is Conv2d c ? $"{c.Kernel}x{c.Kernel}s{c.Stride}" : "");
            Profile.TryGetValue(key, out var t);
            Profile[key] = (t.Forward + (now - _last) * 1000.0 / System.Diagnostics.Stopwatch.Frequency, t.Backward);
            _last = now;
        }
        if (!Training) return;
        _ops.Add(layer);
        foreach (var p in layer.Parameters)
            if (_params.Add(p)) _touched.Add(p);
    }

    /// <summary>Runs every recorded Backward in reverse order, then clears the tape.</summary>
    public void Backward()
    {
        for (int i = _ops.Count - 1; i >= 0; i--)
        {
            long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
            _ops[i].Backward();
            if (Profile is not null)
            {
                var layer = _ops[i];
                var key = layer.GetType().Name + (layer is Conv2d c ? $"{c.Kernel}x{c.Kernel}s{c.Stride}" : "");
                Profile.TryGetValue(key, out var t);
                Profile[key] = (t.Forward, t.Backward + System.Diagnostics.Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
            }
        }
        Clear();
        _last = System.Diagnostics.Stopwatch.GetTimestamp();
    }

    public void Clear() { _ops.Clear(); _params.Clear(); _touched.Clear(); }

    /// <summary>Output tensors are prepared for a fresh forward: gradients zeroed when training.</summary>
    internal static void Prepare(Tensor output, bool training)
    {
        if (training) output.ZeroGrad();
    }
}
