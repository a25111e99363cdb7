using QanaEdge.Training.Data;
using QanaEdge.Training.Smote;

namespace QanaEdge.Training.Tests.Smote;

public class EmbeddingSmoteTests
{
    private const int D = 6;

    /// <summary>Class 0: 400 points around the origin; class 1: 60 points around (4,4,...) with anisotropic
    /// spread; class 2: 30 points around (-4,...) plus, for the outlier test, 3 far points.</summary>
    private static (float[] X, int[] Y) Gaussians(ulong seed, bool outliers)
    {
        var rng = new SeededRandom(seed);
        var x = new List<float>(); var y = new List<int>();
        void Add(int label, double centre, double[] spread)
        {
            for (int j = 0; j < D; j++) x.Add((float)(centre + spread[j] * rng.NextGaussian()));
            y.Add(label);
        }
        var iso = Enumerable.Repeat(1.0, D).ToArray();
        var aniso = new[] { 2.0, 0.5, 1.0, 0.3, 1.5, 0.8 };
        for (int i = 0; i < 400; i++) Add(0, 0, iso);
        for (int i = 0; i < 60; i++) Add(1, 4, aniso);
        for (int i = 0; i < 30; i++) Add(2, -4, iso);
        if (outliers)
            for (int i = 0; i < 3; i++) { for (int j = 0; j < D; j++) x.Add(-4f + (j == i ? 25f : 0f)); y.Add(2); }
        return (x.ToArray(), y.ToArray());
    }

    /// <summary>Neighbours at equal distances are taken in index order (the sort does not decide), so the synthetic
    /// samples do not depend on how a .NET version's sort orders equal keys: with a class of identical embeddings
    /// every anchor's neighbours are the five lowest-numbered other members.</summary>
    [Fact]
    public void Equally_distant_neighbours_are_taken_in_index_order()
    {
        var (x, y) = Gaussians(3, false);
        int n = y.Length;
        var xs = x.ToList(); var ys = y.ToList();
        for (int i = 0; i < 40; i++) { xs.AddRange(Enumerable.Repeat(1.5f, D)); ys.Add(3); }
        var r = EmbeddingSmote.Generate(xs.ToArray(), D, ys.ToArray(), 4,
            new SmoteOptions { Seed = 5, Perturbation = 0, TargetCounts = [400, 60, 30, 200] });
        for (int s = 0; s < r.Count; s++)
        {
            if (r.Labels[s] != 3) continue;
            int anchor = r.Anchors[s] - n, partner = r.Partners[s] - n;
            int[] expected = Enumerable.Range(0, 6).Where(i => i != anchor).Take(5).ToArray();
            Assert.Contains(partner, expected);
        }
    }

    [Fact]
    public void Whitening_gives_unit_covariance_on_the_fitting_data()
    {
        var (x, _) = Gaussians(1, false);
        int n = x.Length / D;
        var w = Whitening.Fit(x, D, maxComponents: D);
        Assert.Equal(D, w.ComponentCount);
        var z = new float[n * D]; var scratch = new float[D];
        for (int i = 0; i < n; i++) w.Transform(x.AsSpan(i * D, D), z.AsSpan(i * D, D), scratch);
        for (int a = 0; a < D; a++)
            for (int b = 0; b < D; b++)
            {
                double mean_a = Enumerable.Range(0, n).Average(i => z[i * D + a]);
                double mean_b = Enumerable.Range(0, n).Average(i => z[i * D + b]);
                double cov = Enumerable.Range(0, n).Sum(i => (z[i * D + a] - mean_a) * (z[i * D + b] - mean_b)) / (n - 1);
                Assert.Equal(a == b ? 1.0 : 0.0, cov, 1e-3);
            }
        // Subspace iteration finds the same leading eigenvalues as the full decomposition.
        var partial = Whitening.Fit(x, D, maxComponents: 2);
        Assert.Equal(w.Eigenvalues[0], partial.Eigenvalues[0], 1e-3);
        Assert.Equal(w.Eigenvalues[1], partial.Eigenvalues[1], 1e-3);
        // Inverse map of a whitened unit step along component 0 is √λ0·σ⊙v0.
        var e = new float[D];
        var delta = new double[D]; delta[0] = 1;
        w.AddInverse(delta, e);
        for (int j = 0; j < D; j++) Assert.Equal(Math.Sqrt(w.Eigenvalues[0]) * w.Components[j] * w.Std[j], e[j], 1e-5);
    }

    [Fact]
    public void Subspace_iteration_matches_the_full_decomposition_on_a_wide_embedding()
    {
        const int wide = 40, n = 300;
        var rng = new SeededRandom(21);
        var x = new float[n * wide];
        // Correlated features: a random mix of latent factors with decaying variance.
        var mix = new double[wide, wide];
        for (int a = 0; a < wide; a++) for (int b = 0; b < wide; b++) mix[a, b] = rng.NextGaussian() / Math.Sqrt(wide);
        for (int i = 0; i < n; i++)
        {
            var latent = Enumerable.Range(0, wide).Select(k => rng.NextGaussian() * Math.Pow(0.85, k)).ToArray();
            for (int j = 0; j < wide; j++) { double v = 0; for (int k = 0; k < wide; k++) v += mix[j, k] * latent[k]; x[i * wide + j] = (float)v; }
        }
        var full = Whitening.Fit(x, wide, maxComponents: wide);
        var partial = Whitening.Fit(x, wide, maxComponents: 4);
        Assert.Equal(4, partial.ComponentCount);
        for (int k = 0; k < 4; k++)
        {
            Assert.Equal(full.Eigenvalues[k], partial.Eigenvalues[k], 1e-3 * full.Eigenvalues[0]);
            double dot = 0;
            for (int j = 0; j < wide; j++) dot += full.Components[k * wide + j] * partial.Components[k * wide + j];
            Assert.Equal(1.0, Math.Abs(dot), 1e-3);
        }
    }

    [Fact]
    public void Counts_reach_the_target_and_majority_gets_nothing()
    {
        var (x, y) = Gaussians(2, false);
        var r = EmbeddingSmote.Generate(x, D, y, 3, new SmoteOptions { TargetFraction = 0.5, Seed = 4 });
        Assert.Equal(new[] { 400, 60, 30 }, r.RealCounts);
        Assert.Equal(new[] { 0, 140, 170 }, r.SyntheticCounts);
        Assert.Equal(140, r.Labels.Count(l => l == 1));
        Assert.Equal(170, r.Labels.Count(l => l == 2));
        Assert.Equal(r.Count * D, r.Samples.Length);
        var explicitTargets = EmbeddingSmote.Generate(x, D, y, 3, new SmoteOptions { TargetCounts = [400, 100, 30] });
        Assert.Equal(new[] { 0, 40, 0 }, explicitTargets.SyntheticCounts);
    }

    [Fact]
    public void Safe_anchor_filter_drops_outliers_and_the_top_decile()
    {
        var (x, y) = Gaussians(3, true);
        var r = EmbeddingSmote.Generate(x, D, y, 3, new SmoteOptions { Seed = 5 });
        int n = y.Length;
        for (int i = n - 3; i < n; i++) Assert.False(r.Safe[i], $"outlier {i} was kept as an anchor");
        // 33 members of class 2: the 90th percentile leaves about 10% (3 or 4 members) out.
        Assert.InRange(r.SafeCounts[2], 29, 30);
        Assert.All(r.Anchors, a => Assert.True(r.Safe[a]));
        Assert.All(Enumerable.Range(0, 400), i => Assert.False(r.Safe[i])); // the majority is not oversampled
        Assert.DoesNotContain(r.Anchors, a => a >= n - 3);
    }

    [Fact]
    public void Without_perturbation_each_sample_is_a_convex_combination_of_two_class_members()
    {
        var (x, y) = Gaussians(6, false);
        var r = EmbeddingSmote.Generate(x, D, y, 3, new SmoteOptions { Perturbation = 0, Seed = 7 });
        for (int s = 0; s < r.Count; s++)
        {
            int a = r.Anchors[s], b = r.Partners[s];
            Assert.Equal(r.Labels[s], y[a]);
            Assert.Equal(r.Labels[s], y[b]);
            Assert.NotEqual(a, b);
            Assert.InRange(r.Lambdas[s], 0f, 1f);
            for (int j = 0; j < D; j++)
                Assert.Equal(x[a * D + j] + r.Lambdas[s] * (x[b * D + j] - x[a * D + j]), r.Samples[s * D + j], 1e-4);
        }
    }

    [Fact]
    public void Perturbed_samples_stay_in_the_class_box_and_near_their_segment()
    {
        var (x, y) = Gaussians(8, false);
        var r = EmbeddingSmote.Generate(x, D, y, 3, new SmoteOptions { Perturbation = 0.1, Seed = 9 });
        double totalOffset = 0, totalSpan = 0;
        for (int s = 0; s < r.Count; s++)
        {
            int c = r.Labels[s];
            var members = Enumerable.Range(0, y.Length).Where(i => y[i] == c).ToArray();
            for (int j = 0; j < D; j++)
            {
                float v = r.Samples[s * D + j];
                Assert.InRange(v, members.Min(i => x[i * D + j]), members.Max(i => x[i * D + j]));
            }
            int a = r.Anchors[s], b = r.Partners[s];
            for (int j = 0; j < D; j++)
            {
                double onSegment = x[a * D + j] + r.Lambdas[s] * (x[b * D + j] - x[a * D + j]);
                totalOffset += Math.Abs(r.Samples[s * D + j] - onSegment);
                totalSpan += Math.Abs(x[b * D + j] - x[a * D + j]);
            }
        }
        // The perturbation is real but small next to the anchor-neighbour distances.
        Assert.True(totalOffset > 0);
        Assert.True(totalOffset < 0.3 * totalSpan, $"offset {totalOffset} vs span {totalSpan}");
    }

    [Fact]
    public void Same_seed_same_samples_other_seed_other_samples()
    {
        var (x, y) = Gaussians(10, false);
        var a = EmbeddingSmote.Generate(x, D, y, 3, new SmoteOptions { Seed = 11 });
        var b = EmbeddingSmote.Generate(x, D, y, 3, new SmoteOptions { Seed = 11 });
        var c = EmbeddingSmote.Generate(x, D, y, 3, new SmoteOptions { Seed = 12 });
        Assert.Equal(a.Samples, b.Samples);
        Assert.NotEqual(a.Samples, c.Samples);
    }

    [Fact]
    public void Bad_input_is_refused()
    {
        Assert.Throws<ArgumentException>(() => EmbeddingSmote.Generate(new float[5], D, new int[1], 2));
        Assert.Throws<ArgumentException>(() => EmbeddingSmote.Generate(new float[12], D, [0, 3], 2));
        var nan = new float[12]; nan[3] = float.NaN;
        Assert.Throws<ArgumentException>(() => EmbeddingSmote.Generate(nan, D, [0, 1], 2));
    }

    [Fact]
    public void Percentile_matches_numpy_linear_interpolation()
    {
        // numpy.percentile([1,2,3,4,5,6,7,8,9,10], 90) = 9.1
        Assert.Equal(9.1, EmbeddingSmote.Percentile([3, 1, 2, 4, 5, 6, 7, 8, 9, 10], 0.9), 12);
    }
}
