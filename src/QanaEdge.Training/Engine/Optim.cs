namespace QanaEdge.Training.Engine;

/// <summary>AdamW (decoupled weight decay, Loshchilov &amp; Hutter), bias-corrected as in PyTorch.</summary>
public sealed class AdamW
{
    private readonly Parameter[] _params;
    private readonly float[][] _m, _v;
    public float Beta1 { get; init; } = 0.9f;
    public float Beta2 { get; init; } = 0.999f;
    public float Epsilon { get; init; } = 1e-8f;
    public float WeightDecay { get; set; } = 1e-4f;
    public long StepCount { get; private set; }

    public AdamW(IEnumerable<Parameter> parameters)
    {
        _params = parameters.ToArray();
        _m = _params.Select(p => new float[p.Length]).ToArray();
        _v = _params.Select(p => new float[p.Length]).ToArray();
    }

    public IReadOnlyList<Parameter> Parameters => _params;

    /// <summary>One update with learning rate <paramref name="lr"/>; gradients are zeroed afterwards.</summary>
    public void Step(float lr)
    {
        StepCount++;
        float bc1 = 1f - MathF.Pow(Beta1, StepCount), bc2 = 1f - MathF.Pow(Beta2, StepCount);
        for (int pi = 0; pi < _params.Length; pi++)
        {
            var p = _params[pi]; var m = _m[pi]; var v = _v[pi];
            float[] w = p.Value, g = p.Grad;
            float decay = p.Decay ? 1f - lr * WeightDecay : 1f;
            for (int i = 0; i < w.Length; i++)
            {
                float gi = g[i];
                m[i] = Beta1 * m[i] + (1 - Beta1) * gi;
                v[i] = Beta2 * v[i] + (1 - Beta2) * gi * gi;
                w[i] = w[i] * decay - lr * (m[i] / bc1) / (MathF.Sqrt(v[i] / bc2) + Epsilon);
            }
            p.ZeroGrad();
        }
    }

    /// <summary>Forgets the moments (used when a new phase starts, e.g. quantization-aware fine-tuning).</summary>
    public void Reset()
    {
        StepCount = 0;
        foreach (var a in _m) Array.Clear(a);
        foreach (var a in _v) Array.Clear(a);
    }
}

/// <summary>Linear warm-up then cosine decay to <see cref="MinFactor"/>·peak.</summary>
public sealed record CosineSchedule(float PeakLr, long WarmupSteps, long TotalSteps, float MinFactor = 0.01f)
{
    public float At(long step)
    {
        if (step < WarmupSteps) return PeakLr * (step + 1) / WarmupSteps;
        double t = Math.Clamp((double)(step - WarmupSteps) / Math.Max(1, TotalSteps - WarmupSteps), 0, 1);
        return (float)(PeakLr * (MinFactor + (1 - MinFactor) * 0.5 * (1 + Math.Cos(Math.PI * t))));
    }
}

/// <summary>Early stopping on a metric that should grow (validation macro-F1).</summary>
public sealed class EarlyStopping(int patience)
{
    public double Best { get; private set; } = double.NegativeInfinity;
    public int BestEpoch { get; private set; } = -1;
    private int _since;

    /// <summary>Returns true when the value is a new best.</summary>
    public bool Observe(int epoch, double value)
    {
        if (value > Best) { Best = value; BestEpoch = epoch; _since = 0; return true; }
        _since++;
        return false;
    }

    public bool ShouldStop => _since >= patience;
}
