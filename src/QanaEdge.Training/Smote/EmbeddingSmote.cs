using QanaEdge.Training.Data;

namespace QanaEdge.Training.Smote;

/// <summary>Settings of <see cref="EmbeddingSmote"/>.</summary>
public sealed record SmoteOptions
{
    /// <summary>k of the same-class k-NN.</summary>
    public int Neighbours { get; init; } = 5;
    /// <summary>An anchor is safe when its median neighbour distance is under this percentile of its class's
    /// median neighbour distances.</summary>
    public double SafePercentile { get; init; } = 0.9;
    /// <summary>Each class is brought up to ⌈TargetFraction·n_max⌉ images (n_max: the largest class) unless
    /// <see cref="TargetCounts"/> says otherwise; a class already at or above its target gets nothing.</summary>
    public double TargetFraction { get; init; } = 0.5;
    /// <summary>Explicit per-class targets (real + synthetic), overriding TargetFraction when set.</summary>
    public int[]? TargetCounts { get; init; }
    /// <summary>Scale η of the perturbation along the local principal directions, in units of the
    /// neighbourhood's standard deviation along each direction.</summary>
    public double Perturbation { get; init; } = 0.1;
    /// <summary>How many local principal directions carry the perturbation.</summary>
    public int LocalDirections { get; init; } = 2;
    /// <summary>At most this many whitening components (the rest of the variance is dropped from distances).</summary>
    public int MaxComponents { get; init; } = 64;
    public ulong Seed { get; init; } = 1;
}

/// <summary>Synthetic embeddings and where they came from.</summary>
public sealed class SmoteResult
{
    public required int Dimension { get; init; }
    /// <summary>Synthetic embeddings, row-major (Count × Dimension), in the original embedding space.</summary>
    public required float[] Samples { get; init; }
    public required int[] Labels { get; init; }
    /// <summary>Index (into the input rows) of each sample's anchor and of the neighbour it moved towards.</summary>
    public required int[] Anchors { get; init; }
    public required int[] Partners { get; init; }
    /// <summary>Interpolation weight λ in [0, 1) of each sample (before the perturbation).</summary>
    public required float[] Lambdas { get; init; }
    /// <summary>Per input row: true when it was a safe anchor of an oversampled class.</summary>
    public required bool[] Safe { get; init; }
    /// <summary>Per class: real count, safe anchors, synthetic samples made.</summary>
    public required int[] RealCounts { get; init; }
    public required int[] SafeCounts { get; init; }
    public required int[] SyntheticCounts { get; init; }
    public int Count => Labels.Length;
}

/// <summary>
/// Embedding-space SMOTE (DESIGN.md): standardise and PCA-whiten the penultimate embeddings of the training
/// split; for each class below its target, find each member's k nearest same-class neighbours in whitened
/// space, keep as anchors the "safe" members whose median neighbour distance is under the class's
/// 90th percentile (outliers and bridge points between clusters are left out), then synthesise
/// z = z_a + λ(z_b − z_a) + η·Σ_j ε_j·s_j·u_j for a random safe anchor a, one of its neighbours b,
/// λ ~ U[0,1), ε_j ~ N(0,1) clipped to ±2, and (u_j, s_j) the leading principal directions and standard
/// deviations of the anchor's neighbourhood; map back through the inverse whitening. The interpolation is
/// done on the original embeddings (identical to interpolating in whitened space and mapping back, as the
/// map is affine, and it loses nothing in the dropped components); each sample is finally clamped to its
/// class's per-dimension range of real embeddings, so no sample leaves the class's bounding box.
/// Synthetic data are embeddings, never images.
/// </summary>
public static class EmbeddingSmote
{
    public static SmoteResult Generate(ReadOnlySpan<float> embeddings, int dimension, ReadOnlySpan<int> labels, int classCount,
        SmoteOptions? options = null)
    {
        var o = options ?? new SmoteOptions();
        if (dimension <= 0 || embeddings.Length != labels.Length * dimension)
            throw new ArgumentException($"{embeddings.Length} values are not {labels.Length} embeddings of {dimension}");
        if (o.Neighbours < 1) throw new ArgumentException("Neighbours must be at least 1");
        if (o.SafePercentile is <= 0 or > 1) throw new ArgumentException("SafePercentile must be in (0, 1]");
        if (o.TargetCounts is not null && o.TargetCounts.Length != classCount) throw new ArgumentException($"TargetCounts needs {classCount} entries");
        int n = labels.Length, d = dimension;
        var members = new List<int>[classCount];
        for (int c = 0; c < classCount; c++) members[c] = [];
        for (int i = 0; i < n; i++)
        {
            if ((uint)labels[i] >= (uint)classCount) throw new ArgumentException($"label {labels[i]} at {i} is outside 0..{classCount - 1}");
            members[labels[i]].Add(i);
        }
        for (int i = 0; i < embeddings.Length; i++)
            if (!float.IsFinite(embeddings[i])) throw new ArgumentException($"embedding {i / d} has a non-finite value");

        int nMax = members.Max(m => m.Count);
        var targets = new int[classCount];
        for (int c = 0; c < classCount; c++)
            targets[c] = o.TargetCounts?[c] ?? (int)Math.Ceiling(o.TargetFraction * nMax);

        var whitening = Whitening.Fit(embeddings, d, o.MaxComponents, seed: o.Seed);
        int r = whitening.ComponentCount;
        var z = new float[n * r];
        var scratch = new float[d];
        for (int i = 0; i < n; i++) whitening.Transform(embeddings.Slice(i * d, d), z.AsSpan(i * r, r), scratch);

        var samples = new List<float>(); var sLabels = new List<int>(); var sAnchors = new List<int>();
        var sPartners = new List<int>(); var sLambdas = new List<float>();
        var safe = new bool[n];
        var realCounts = members.Select(m => m.Count).ToArray();
        var safeCounts = new int[classCount];
        var synthCounts = new int[classCount];
        var sample = new float[d];
        var deltaZ = new double[r];

        for (int c = 0; c < classCount; c++)
        {
            var m = members[c];
            int need = targets[c] - m.Count;
            if (need <= 0 || m.Count < 2) continue;
            int k = Math.Min(o.Neighbours, m.Count - 1);
            var (neighbours, medians) = NearestNeighbours(z, r, m, k);
            double cut = Percentile(medians, o.SafePercentile);
            var anchors = Enumerable.Range(0, m.Count).Where(a => medians[a] < cut).ToList();
            if (anchors.Count == 0) anchors = Enumerable.Range(0, m.Count).Where(a => medians[a] <= cut).ToList();
            foreach (var a in anchors) safe[m[a]] = true;
            safeCounts[c] = anchors.Count;

            // Per-class bounding box of the real embeddings.
            var lo = new float[d]; var hi = new float[d];
            lo.AsSpan().Fill(float.PositiveInfinity); hi.AsSpan().Fill(float.NegativeInfinity);
            foreach (var i in m)
                for (int j = 0; j < d; j++) { float v = embeddings[i * d + j]; if (v < lo[j]) lo[j] = v; if (v > hi[j]) hi[j] = v; }

            var rng = SeededRandom.For(o.Seed, (ulong)c, 0x5307E);
            var localCache = new Dictionary<int, (double[] Std, double[][] Dirs)>();
            for (int s = 0; s < need; s++)
            {
                int a = anchors[rng.NextInt(anchors.Count)];
                int b = neighbours[a][rng.NextInt(k)];
                double lambda = rng.NextDouble();
                int ia = m[a], ib = m[b];
                for (int j = 0; j < d; j++)
                {
                    float xa = embeddings[ia * d + j];
                    sample[j] = (float)(xa + lambda * (embeddings[ib * d + j] - xa));
                }
                if (o.Perturbation > 0 && o.LocalDirections > 0)
                {
                    if (!localCache.TryGetValue(a, out var local))
                        localCache[a] = local = LocalDirections(z, r, m, a, neighbours[a], o.LocalDirections);
                    Array.Clear(deltaZ);
                    for (int q = 0; q < local.Dirs.Length; q++)
                    {
                        double eps = Math.Clamp(rng.NextGaussian(), -2, 2) * o.Perturbation * local.Std[q];
                        for (int j = 0; j < r; j++) deltaZ[j] += eps * local.Dirs[q][j];
                    }
                    whitening.AddInverse(deltaZ, sample);
                }
                for (int j = 0; j < d; j++) sample[j] = Math.Clamp(sample[j], lo[j], hi[j]);
                samples.AddRange(sample); sLabels.Add(c); sAnchors.Add(ia); sPartners.Add(ib); sLambdas.Add((float)lambda);
            }
            synthCounts[c] = need;
        }
        return new SmoteResult
        {
            Dimension = d, Samples = samples.ToArray(), Labels = sLabels.ToArray(), Anchors = sAnchors.ToArray(),
            Partners = sPartners.ToArray(), Lambdas = sLambdas.ToArray(), Safe = safe,
            RealCounts = realCounts, SafeCounts = safeCounts, SyntheticCounts = synthCounts,
        };
    }

    /// <summary>For each class member (local index), its k nearest other members and the median of their
    /// distances, by brute force in whitened space (ties broken by index, so the result is deterministic).</summary>
    private static (int[][] Neighbours, double[] Medians) NearestNeighbours(float[] z, int r, List<int> m, int k)
    {
        int count = m.Count;
        var neighbours = new int[count][];
        var medians = new double[count];
        var dist = new double[count];
        var idx = new int[count];
        for (int a = 0; a < count; a++)
        {
            var za = z.AsSpan(m[a] * r, r);
            for (int b = 0; b < count; b++)
            {
                idx[b] = b;
                dist[b] = b == a ? double.PositiveInfinity : System.Numerics.Tensors.TensorPrimitives.Distance(za, z.AsSpan(m[b] * r, r));
            }
            Array.Sort(dist, idx);
            // Array.Sort is unstable: members at equal distances (duplicate embeddings) would come out in an order
            // that depends on the sort's implementation, so each run of equal distances reaching into the first k
            // is put in index order.
            for (int s = 0; s < k;)
            {
                int e = s + 1;
                while (e < count && dist[e] == dist[s]) e++;
                if (e - s > 1) Array.Sort(idx, s, e - s);
                s = e;
            }
            neighbours[a] = idx[..k];
            var nd = dist[..k];
            medians[a] = k % 2 == 1 ? nd[k / 2] : (nd[k / 2 - 1] + nd[k / 2]) / 2;
        }
        return (neighbours, medians);
    }

    /// <summary>Linear-interpolated percentile (numpy's default) of values, p in (0, 1].</summary>
    public static double Percentile(double[] values, double p)
    {
        var sorted = values.ToArray();
        Array.Sort(sorted);
        double pos = p * (sorted.Length - 1);
        int lo = (int)Math.Floor(pos), hi = Math.Min(lo + 1, sorted.Length - 1);
        return sorted[lo] + (pos - lo) * (sorted[hi] - sorted[lo]);
    }

    /// <summary>Leading principal directions (unit vectors in whitened space) and standard deviations of the
    /// anchor together with its neighbours, from the eigen-decomposition of their (k+1)×(k+1) Gram matrix.</summary>
    private static (double[] Std, double[][] Dirs) LocalDirections(float[] z, int r, List<int> m, int a, int[] neighbours, int count)
    {
        var pts = new List<int> { m[a] };
        pts.AddRange(neighbours.Select(b => m[b]));
        int p = pts.Count;
        var centre = new double[r];
        foreach (var i in pts) for (int j = 0; j < r; j++) centre[j] += z[i * r + j];
        for (int j = 0; j < r; j++) centre[j] /= p;
        var y = new double[p][];
        for (int u = 0; u < p; u++) { y[u] = new double[r]; for (int j = 0; j < r; j++) y[u][j] = z[pts[u] * r + j] - centre[j]; }
        var g = new double[p, p];
        for (int u = 0; u < p; u++) for (int v = u; v < p; v++) { double s = 0; for (int j = 0; j < r; j++) s += y[u][j] * y[v][j]; g[u, v] = s; g[v, u] = s; }
        var (values, vectors) = SymmetricEigen.Decompose(g);
        var std = new List<double>(); var dirs = new List<double[]>();
        for (int q = 0; q < Math.Min(count, p - 1); q++)
        {
            if (values[q] <= 1e-12 * Math.Max(values[0], 1e-300)) break;
            var dir = new double[r];
            for (int u = 0; u < p; u++) for (int j = 0; j < r; j++) dir[j] += vectors[q, u] * y[u][j];
            double norm = Math.Sqrt(values[q]);
            for (int j = 0; j < r; j++) dir[j] /= norm;
            dirs.Add(dir); std.Add(Math.Sqrt(values[q] / (p - 1)));
        }
        return (std.ToArray(), dirs.ToArray());
    }
}
