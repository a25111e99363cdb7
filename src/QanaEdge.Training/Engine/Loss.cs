namespace QanaEdge.Training.Engine;

/// <summary>
/// Softmax cross-entropy over logits [N,1,1,K] with per-class weights, label smoothing and mixed (mixup) targets.
/// loss = Σ_i w_{y_i} · [(1−ε)(−log p_{i,y_i}) + ε/K Σ_k (−log p_{i,k})] / Σ_i w_{y_i}
/// (with ε = 0 this is PyTorch's weighted cross_entropy with reduction 'mean').
/// With <see cref="LogitOffsets"/> b the softmax sees z + b: the logit-adjusted loss of Menon et al. (2021)
/// when b_c = τ·log π_c, which trains the raw logits towards p(y|x)/π_y^τ without replaying rare images.
/// </summary>
public sealed class SoftmaxCrossEntropy
{
    public float[]? ClassWeights { get; set; }
    public float LabelSmoothing { get; set; }
    /// <summary>Per-class constants added to the logits inside the loss only (null = none).</summary>
    public float[]? LogitOffsets { get; set; }

    /// <summary>Computes the loss and writes (not accumulates) d loss / d logits into logits.Grad.</summary>
    public float Forward(Tensor logits, ReadOnlySpan<int> labels, Span<float> probabilities = default) =>
        Forward(logits, labels, labels, 0f, probabilities);

    /// <summary>
    /// The loss of a mixed batch (mixup): sample i is (1 − λ)·image of <paramref name="labels"/>[i] + λ·image of
    /// <paramref name="mixLabels"/>[i], and its target (and class weight) is mixed in the same proportion.
    /// λ = 0 is <see cref="Forward(Tensor, ReadOnlySpan{int}, Span{float})"/>.
    /// </summary>
    public float Forward(Tensor logits, ReadOnlySpan<int> labels, ReadOnlySpan<int> mixLabels, float lambda, Span<float> probabilities = default)
    {
        int n = logits.N, k = logits.PerSample;
        if (labels.Length != n || mixLabels.Length != n) throw new ArgumentException("one label per sample");
        if (lambda is < 0f or > 1f) throw new ArgumentOutOfRangeException(nameof(lambda), "mixing weight must be in [0, 1]");
        double wsum = 0;
        for (int i = 0; i < n; i++) wsum += Weight(labels[i], mixLabels[i], lambda);
        double loss = 0;
        float eps = LabelSmoothing;
        Span<double> p = stackalloc double[k];
        Span<double> zb = stackalloc double[k];
        if (LogitOffsets is { } offsets && offsets.Length != k) throw new ArgumentException($"{offsets.Length} logit offsets for {k} classes");
        for (int i = 0; i < n; i++)
        {
            var z = logits.Sample(i);
            var g = logits.SampleGrad(i);
            int y = labels[i], y2 = mixLabels[i];
            if ((uint)y >= (uint)k || (uint)y2 >= (uint)k) throw new ArgumentException($"label {y} or {y2} out of range");
            for (int j = 0; j < k; j++) zb[j] = z[j] + (LogitOffsets?[j] ?? 0f);
            double max = double.NegativeInfinity;
            for (int j = 0; j < k; j++) max = Math.Max(max, zb[j]);
            double sum = 0;
            for (int j = 0; j < k; j++) { p[j] = Math.Exp(zb[j] - max); sum += p[j]; }
            double logSum = Math.Log(sum);
            double w = Weight(y, y2, lambda) / wsum;
            double li = 0;
            for (int j = 0; j < k; j++)
            {
                p[j] /= sum;
                double target = (1 - eps) * ((j == y ? 1 - lambda : 0) + (j == y2 ? lambda : 0)) + eps / k;
                double logp = zb[j] - max - logSum;
                li -= target * logp;
                g[j] = (float)(w * (p[j] - target));
                if (!probabilities.IsEmpty) probabilities[i * k + j] = (float)p[j];
            }
            loss += w * li;
        }
        return (float)loss;
    }

    private double Weight(int y, int y2, float lambda) =>
        ClassWeights is { } cw ? (1 - lambda) * cw[y] + lambda * cw[y2] : 1.0;
}
