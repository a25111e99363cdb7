using QanaEdge.Model.Packaging;

namespace QanaEdge.Runtime;

/// <summary>
/// The integrate-and-fire readout. Input current per class and step d_k = q_k + 128 (≥ 0; softmax is
/// shift-invariant so the offset is harmless). u₀ = 0; each step u ← u + d_k, s = [u ≥ θ_k], u ← u − θ_k·s.
/// Counts c_k = Σ_t s_k,t; probabilities p_k = softmax(β·Σ_t w_t·s_k,t), w_t = 1 when no step weights are given.
/// </summary>
public static class SpikingReadout
{
    /// <summary>Stepped simulation over T steps (the reference).</summary>
    public static void Simulate(ReadOnlySpan<sbyte> logits, ReadOnlySpan<int> thresholds, int timeSteps, Span<int> counts)
    {
        Check(logits, thresholds, timeSteps, counts.Length);
        for (int k = 0; k < logits.Length; k++)
        {
            int d = logits[k] + 128, theta = thresholds[k];
            long u = 0;
            int c = 0;
            for (int t = 0; t < timeSteps; t++)
            {
                u += d;
                if (u >= theta) { c++; u -= theta; }
            }
            counts[k] = c;
        }
    }

    /// <summary>
    /// Event-driven closed form for constant current: after t steps u = t·d − θ·c, and the neuron fires
    /// whenever that reaches θ, so c = min(T, ⌊T·d/θ⌋) (at most one spike per step caps it at T).
    /// </summary>
    public static void ClosedForm(ReadOnlySpan<sbyte> logits, ReadOnlySpan<int> thresholds, int timeSteps, Span<int> counts)
    {
        Check(logits, thresholds, timeSteps, counts.Length);
        for (int k = 0; k < logits.Length; k++)
            counts[k] = (int)Math.Min(timeSteps, (long)timeSteps * (logits[k] + 128) / thresholds[k]);
    }

    /// <summary>p_k = softmax(β·Σ_t w_t·s_k,t). Step weights need the spike trains, which are recomputed from the logits.</summary>
    public static void Probabilities(ReadOnlySpan<sbyte> logits, ReadOnlySpan<int> thresholds, int timeSteps,
        double beta, ReadOnlySpan<double> stepWeights, Span<float> probabilities)
    {
        Check(logits, thresholds, timeSteps, probabilities.Length);
        if (!stepWeights.IsEmpty && stepWeights.Length != timeSteps)
            throw new ArgumentException($"{stepWeights.Length} step weights for a window of {timeSteps}", nameof(stepWeights));
        Span<double> z = logits.Length <= PackageLimits.MaxClasses ? stackalloc double[logits.Length] : new double[logits.Length];
        for (int k = 0; k < logits.Length; k++)
        {
            int d = logits[k] + 128, theta = thresholds[k];
            if (stepWeights.IsEmpty)
            {
                z[k] = beta * Math.Min(timeSteps, (long)timeSteps * d / theta);
                continue;
            }
            long u = 0;
            double sum = 0;
            for (int t = 0; t < timeSteps; t++)
            {
                u += d;
                if (u >= theta) { sum += stepWeights[t]; u -= theta; }
            }
            z[k] = beta * sum;
        }
        Softmax(z, probabilities);
    }

    /// <summary>The class a device reports: the highest probability; ties (the readout's counts saturate at T) go to the higher logit.</summary>
    public static int Decide(ReadOnlySpan<float> p, ReadOnlySpan<sbyte> logits)
    {
        int best = 0;
        for (int k = 1; k < p.Length; k++)
            if (p[k] > p[best] || (p[k] == p[best] && logits[k] > logits[best])) best = k;
        return best;
    }

    /// <summary>Numerically stable softmax (max subtracted) into float probabilities.</summary>
    public static void Softmax(ReadOnlySpan<double> z, Span<float> probabilities)
    {
        double max = double.NegativeInfinity;
        foreach (double v in z) max = Math.Max(max, v);
        double sum = 0;
        for (int k = 0; k < z.Length; k++) sum += Math.Exp(z[k] - max);
        for (int k = 0; k < z.Length; k++) probabilities[k] = (float)(Math.Exp(z[k] - max) / sum);
    }

    private static void Check(ReadOnlySpan<sbyte> logits, ReadOnlySpan<int> thresholds, int timeSteps, int outLength)
    {
        if (thresholds.Length != logits.Length || outLength != logits.Length)
            throw new ArgumentException($"{logits.Length} logits, {thresholds.Length} thresholds, {outLength} outputs");
        if (timeSteps <= 0) throw new ArgumentOutOfRangeException(nameof(timeSteps), "the window T must be positive");
        foreach (int t in thresholds)
            if (t <= 0) throw new ArgumentOutOfRangeException(nameof(thresholds), "thresholds must be positive");
    }
}
