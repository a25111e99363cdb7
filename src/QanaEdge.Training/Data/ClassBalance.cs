namespace QanaEdge.Training.Data;

/// <summary>How strongly a loss weight or sampling rate follows the inverse class frequency.</summary>
public enum ClassWeighting
{
    /// <summary>w_c ∝ 1 / n_c: every class contributes equally to the expected loss.</summary>
    Inverse,
    /// <summary>w_c ∝ 1 / √n_c: half-way, the usual compromise when the rarest classes have few dozen images
    /// (full inverse weighting multiplies their noise by up to 78× on HAM10000).</summary>
    InverseSqrt,
    /// <summary>w_c ∝ (1 − β) / (1 − β^n_c) (Cui et al. 2019, "effective number of samples"), β = 0.999.</summary>
    EffectiveNumber,
}

/// <summary>
/// Class-imbalance helpers. HAM10000 is 68% nv and 0.9% df; an unweighted loss learns to say nv. Two
/// remedies, usable together at reduced strength: per-class loss weights and a class-balanced sampler.
/// docs/evaluation.md says which the shipped model uses.
/// </summary>
public static class ClassBalance
{
    /// <summary>Per-class loss weights, normalised so that the weighted mean over the training images is 1
    /// (Σ_c n_c·w_c = Σ_c n_c): the learning rate keeps its meaning. A class with no images gets weight 0.</summary>
    public static float[] Weights(ReadOnlySpan<int> counts, ClassWeighting scheme = ClassWeighting.InverseSqrt, double beta = 0.999)
    {
        var w = new double[counts.Length];
        double weighted = 0, total = 0;
        for (int c = 0; c < counts.Length; c++)
        {
            int n = counts[c];
            if (n < 0) throw new ArgumentException("class counts cannot be negative");
            if (n == 0) continue;
            w[c] = scheme switch
            {
                ClassWeighting.Inverse => 1.0 / n,
                ClassWeighting.InverseSqrt => 1.0 / Math.Sqrt(n),
                ClassWeighting.EffectiveNumber => (1 - beta) / (1 - Math.Pow(beta, n)),
                _ => throw new ArgumentOutOfRangeException(nameof(scheme)),
            };
            weighted += n * w[c]; total += n;
        }
        if (total == 0) throw new ArgumentException("every class count is zero");
        var result = new float[counts.Length];
        for (int c = 0; c < counts.Length; c++) result[c] = (float)(w[c] * total / weighted);
        return result;
    }

    /// <summary>
    /// One epoch's sample order for a class-balanced sampler: the epoch has as many draws as the data set;
    /// class c is drawn with probability ∝ n_c^α (α = 0: all classes equally often, α = 1: natural
    /// frequencies), and within a class images are taken from a fresh seeded permutation, cycling when the
    /// class is exhausted, so every image of a class is seen before any repeats.
    /// </summary>
    public static int[] BalancedEpoch(ReadOnlySpan<int> labels, int classCount, ulong seed, int epoch, double alpha = 0.5)
    {
        if (alpha < 0 || alpha > 1) throw new ArgumentOutOfRangeException(nameof(alpha), "alpha must be in [0, 1]");
        var members = new List<int>[classCount];
        for (int c = 0; c < classCount; c++) members[c] = [];
        for (int i = 0; i < labels.Length; i++)
        {
            if ((uint)labels[i] >= (uint)classCount) throw new ArgumentException($"label {labels[i]} at {i} is outside 0..{classCount - 1}");
            members[labels[i]].Add(i);
        }
        var rng = SeededRandom.For(seed, (ulong)epoch, 0xBA1A);
        var cumulative = new double[classCount];
        double acc = 0;
        for (int c = 0; c < classCount; c++) { acc += members[c].Count == 0 ? 0 : Math.Pow(members[c].Count, alpha); cumulative[c] = acc; }

        var perm = new int[classCount][];
        var next = new int[classCount];
        for (int c = 0; c < classCount; c++) { perm[c] = members[c].ToArray(); rng.Shuffle(perm[c].AsSpan()); }
        var order = new int[labels.Length];
        for (int i = 0; i < order.Length; i++)
        {
            double u = rng.NextDouble() * acc;
            int c = 0;
            while (c < classCount - 1 && (u >= cumulative[c] || members[c].Count == 0)) c++;
            if (next[c] == perm[c].Length) { next[c] = 0; rng.Shuffle(perm[c].AsSpan()); }
            order[i] = perm[c][next[c]++];
        }
        return order;
    }
}
