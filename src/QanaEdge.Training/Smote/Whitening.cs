using System.Numerics.Tensors;

namespace QanaEdge.Training.Smote;

/// <summary>
/// Standardisation followed by PCA whitening, fitted on training embeddings only:
/// s = (x − μ) / σ per dimension, z_j = v_jᵀ s / √λ_j for the leading principal components (λ_j, v_j) of
/// the standardised data. In z, Euclidean distance is the Mahalanobis distance of the training cloud, so
/// k-NN is not dominated by a few high-variance features. Components with λ_j under a small fraction of the
/// largest are dropped (they carry rounding noise, and 1/√λ would amplify it).
/// </summary>
public sealed class Whitening
{
    public int Dimension { get; }
    public float[] Mean { get; }
    /// <summary>Per-dimension standard deviation (1 where a feature is constant, so it maps to 0).</summary>
    public float[] Std { get; }
    /// <summary>Retained eigenvalues of the standardised covariance, descending.</summary>
    public double[] Eigenvalues { get; }
    /// <summary>Components × Dimension, row j is the unit eigenvector v_j.</summary>
    public float[] Components { get; }
    public int ComponentCount => Eigenvalues.Length;

    private Whitening(int d, float[] mean, float[] std, double[] values, float[] components)
    {
        Dimension = d; Mean = mean; Std = std; Eigenvalues = values; Components = components;
    }

    /// <summary>Fits on n rows of d values (row-major). At most <paramref name="maxComponents"/> components are
    /// kept; when that is fewer than d the leading subspace is found by subspace iteration, otherwise the
    /// covariance is decomposed directly.</summary>
    public static Whitening Fit(ReadOnlySpan<float> rows, int dimension, int maxComponents = 128,
        double relativeEigenFloor = 1e-6, ulong seed = 1)
    {
        if (dimension <= 0 || rows.Length % dimension != 0) throw new ArgumentException($"{rows.Length} values are not rows of {dimension}");
        int n = rows.Length / dimension, d = dimension;
        if (n < 2) throw new ArgumentException("whitening needs at least two embeddings");
        var mean = new double[d];
        var sq = new double[d];
        for (int i = 0; i < n; i++)
        {
            var r = rows.Slice(i * d, d);
            for (int j = 0; j < d; j++) mean[j] += r[j];
        }
        for (int j = 0; j < d; j++) mean[j] /= n;
        for (int i = 0; i < n; i++)
        {
            var r = rows.Slice(i * d, d);
            for (int j = 0; j < d; j++) { double e = r[j] - mean[j]; sq[j] += e * e; }
        }
        var meanF = new float[d]; var stdF = new float[d];
        for (int j = 0; j < d; j++)
        {
            meanF[j] = (float)mean[j];
            double s = Math.Sqrt(sq[j] / (n - 1));
            stdF[j] = s > 1e-12 ? (float)s : 1f;
        }
        var x = new float[n * d];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < d; j++) x[i * d + j] = (rows[i * d + j] - meanF[j]) / stdF[j];

        int r0 = Math.Min(Math.Min(maxComponents, d), n - 1);
        if (r0 < 1) r0 = 1;
        double[] values; float[] comps;
        // Subspace iteration runs with 10 extra directions: the leading r converge at the rate
        // (λ_{r+10}/λ_r)^iterations instead of (λ_{r+1}/λ_r)^iterations.
        int oversampled = Math.Min(r0 + 10, d);
        if (oversampled == d) (values, comps) = FullCovariance(x, n, d);
        else (values, comps) = SubspaceIteration(x, n, d, oversampled, seed);

        int keep = 0;
        while (keep < values.Length && keep < r0 && values[keep] > relativeEigenFloor * Math.Max(values[0], 1e-300)) keep++;
        if (keep == 0) throw new ArgumentException("the embeddings do not vary: nothing to whiten");
        return new Whitening(d, meanF, stdF, values[..keep], comps.AsSpan(0, keep * d).ToArray());
    }

    private static (double[], float[]) FullCovariance(float[] x, int n, int d)
    {
        var cov = new double[d, d];
        for (int i = 0; i < n; i++)
        {
            var r = x.AsSpan(i * d, d);
            for (int a = 0; a < d; a++)
            {
                double ra = r[a];
                if (ra == 0) continue;
                for (int b = a; b < d; b++) cov[a, b] += ra * r[b];
            }
        }
        for (int a = 0; a < d; a++)
            for (int b = a; b < d; b++) { cov[a, b] /= n - 1; cov[b, a] = cov[a, b]; }
        var (values, vectors) = SymmetricEigen.Decompose(cov);
        var comps = new float[d * d];
        for (int k = 0; k < d; k++) for (int i = 0; i < d; i++) comps[k * d + i] = (float)vectors[k, i];
        return (values, comps);
    }

    /// <summary>Leading r eigenpairs of XᵀX/(n−1) without forming it: Q ← orth(Xᵀ(XQ)) a few times, then
    /// Rayleigh–Ritz on the r×r projected matrix.</summary>
    private static (double[], float[]) SubspaceIteration(float[] x, int n, int d, int r, ulong seed)
    {
        var rng = new Data.SeededRandom(seed);
        var q = new float[r * d];
        for (int i = 0; i < q.Length; i++) q[i] = (float)rng.NextGaussian();
        Orthonormalise(q, r, d);
        var xq = new float[n * r];
        var z = new float[r * d];
        for (int iter = 0; iter < 12; iter++)
        {
            ApplyCovariance(x, n, d, q, r, xq, z);
            Array.Copy(z, q, z.Length);
            Orthonormalise(q, r, d);
        }
        ApplyCovariance(x, n, d, q, r, xq, z);
        var h = new double[r, r];
        for (int a = 0; a < r; a++)
            for (int b = 0; b < r; b++) h[a, b] = TensorPrimitives.Dot(q.AsSpan(a * d, d), z.AsSpan(b * d, d));
        for (int a = 0; a < r; a++) for (int b = a + 1; b < r; b++) { double m = (h[a, b] + h[b, a]) / 2; h[a, b] = m; h[b, a] = m; }
        var (values, w) = SymmetricEigen.Decompose(h);
        var comps = new float[r * d];
        var acc = new double[d];
        for (int k = 0; k < r; k++)
        {
            Array.Clear(acc);
            for (int a = 0; a < r; a++)
            {
                double c = w[k, a];
                var qa = q.AsSpan(a * d, d);
                for (int i = 0; i < d; i++) acc[i] += c * qa[i];
            }
            for (int i = 0; i < d; i++) comps[k * d + i] = (float)acc[i];
        }
        return (values, comps);
    }

    /// <summary>z_j = Xᵀ(X q_j)/(n−1) for the r rows q_j of q.</summary>
    private static void ApplyCovariance(float[] x, int n, int d, float[] q, int r, float[] xq, float[] z)
    {
        for (int i = 0; i < n; i++)
        {
            var xi = x.AsSpan(i * d, d);
            for (int j = 0; j < r; j++) xq[i * r + j] = TensorPrimitives.Dot(xi, q.AsSpan(j * d, d));
        }
        Array.Clear(z);
        for (int i = 0; i < n; i++)
        {
            var xi = x.AsSpan(i * d, d);
            for (int j = 0; j < r; j++)
            {
                float c = xq[i * r + j] / (n - 1);
                var zj = z.AsSpan(j * d, d);
                TensorPrimitives.MultiplyAdd(xi, c, zj, zj);
            }
        }
    }

    /// <summary>Modified Gram–Schmidt on the r rows (a row that collapses is replaced by a unit axis).</summary>
    private static void Orthonormalise(float[] q, int r, int d)
    {
        for (int a = 0; a < r; a++)
        {
            var qa = q.AsSpan(a * d, d);
            for (int pass = 0; pass < 2; pass++)
                for (int b = 0; b < a; b++)
                {
                    var qb = q.AsSpan(b * d, d);
                    float proj = TensorPrimitives.Dot(qa, qb);
                    TensorPrimitives.MultiplyAdd(qb, -proj, qa, qa);
                }
            float norm = TensorPrimitives.Norm(qa);
            if (norm < 1e-20f) { qa.Clear(); qa[a % d] = 1; }
            else TensorPrimitives.Divide(qa, norm, qa);
        }
    }

    /// <summary>Whitened coordinates z (length ComponentCount) of one embedding.</summary>
    public void Transform(ReadOnlySpan<float> embedding, Span<float> z, Span<float> scratch)
    {
        if (embedding.Length != Dimension || z.Length != ComponentCount || scratch.Length != Dimension)
            throw new ArgumentException("embedding, output or scratch has the wrong length");
        for (int i = 0; i < Dimension; i++) scratch[i] = (embedding[i] - Mean[i]) / Std[i];
        for (int j = 0; j < ComponentCount; j++)
            z[j] = (float)(TensorPrimitives.Dot(scratch, Components.AsSpan(j * Dimension, Dimension)) / Math.Sqrt(Eigenvalues[j]));
    }

    /// <summary>Maps a displacement in whitened coordinates back to embedding space and adds it:
    /// x += σ ⊙ Σ_j √λ_j·δz_j·v_j (the inverse of the whitening's linear part).</summary>
    public void AddInverse(ReadOnlySpan<double> deltaZ, Span<float> embedding)
    {
        if (deltaZ.Length != ComponentCount || embedding.Length != Dimension) throw new ArgumentException("wrong length");
        for (int j = 0; j < ComponentCount; j++)
        {
            double c = deltaZ[j] * Math.Sqrt(Eigenvalues[j]);
            if (c == 0) continue;
            var v = Components.AsSpan(j * Dimension, Dimension);
            for (int i = 0; i < Dimension; i++) embedding[i] += (float)(c * v[i] * Std[i]);
        }
    }
}
