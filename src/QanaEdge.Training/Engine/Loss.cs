namespace QanaEdge.Training.Engine;

/// <summary>
/// Softmax cross-entropy over logits [N,1,1,K] with per-class weights and label smoothing.
/// loss = Σ_i w_{y_i} · [(1−ε)(−log p_{i,y_i}) + ε/K Σ_k (−log p_{i,k})] / Σ_i w_{y_i}
/// (with ε = 0 this is PyTorch's weighted cross_entropy with reduction 'mean').
/// </summary>
public sealed class SoftmaxCrossEntropy
{
    public float[]? ClassWeights { get; set; }
    public float LabelSmoothing { get; set; }

    /// <summary>Computes the loss and writes (not accumulates) d loss / d logits into logits.Grad.</summary>
    public float Forward(Tensor logits, ReadOnlySpan<int> labels, Span<float> probabilities = default)
    {
        int n = logits.N, k = logits.PerSample;
        if (labels.Length != n) throw new ArgumentException("one label per sample");
        double wsum = 0;
        for (int i = 0; i < n; i++) wsum += ClassWeights?[labels[i]] ?? 1f;
        double loss = 0;
        float eps = LabelSmoothing;
        Span<double> p = stackalloc double[k];
        for (int i = 0; i < n; i++)
        {
            var z = logits.Sample(i);
            var g = logits.SampleGrad(i);
            int y = labels[i];
            if ((uint)y >= (uint)k) throw new ArgumentException($"label {y} out of range");
            double max = double.NegativeInfinity;
            for (int j = 0; j < k; j++) max = Math.Max(max, z[j]);
            double sum = 0;
            for (int j = 0; j < k; j++) { p[j] = Math.Exp(z[j] - max); sum += p[j]; }
            double logSum = Math.Log(sum);
            double w = (ClassWeights?[y] ?? 1f) / wsum;
            double li = 0;
            for (int j = 0; j < k; j++)
            {
                p[j] /= sum;
                double target = (j == y ? 1 - eps : 0) + eps / k;
                double logp = z[j] - max - logSum;
                li -= target * logp;
                g[j] = (float)(w * (p[j] - target));
                if (!probabilities.IsEmpty) probabilities[i * k + j] = (float)p[j];
            }
            loss += w * li;
        }
        return (float)loss;
    }
}
