using QanaEdge.Training.Data;

namespace QanaEdge.Training.Tests.Data;

public class AugmentationTests
{
    private static byte[] RandomImage(int h, int w, ulong seed)
    {
        var rng = new SeededRandom(seed);
        var img = new byte[h * w * 3];
        for (int i = 0; i < img.Length; i++) img[i] = (byte)(40 + rng.NextInt(180));
        return img;
    }

    [Fact]
    public void Flips_move_pixels_exactly()
    {
        var img = RandomImage(4, 5, 1);
        var h = (byte[])img.Clone();
        Augmentation.Apply(h, 4, 5, AugmentationParameters.Identity with { FlipHorizontal = true });
        var v = (byte[])img.Clone();
        Augmentation.Apply(v, 4, 5, AugmentationParameters.Identity with { FlipVertical = true });
        for (int y = 0; y < 4; y++)
            for (int x = 0; x < 5; x++)
                for (int c = 0; c < 3; c++)
                {
                    Assert.Equal(img[(y * 5 + x) * 3 + c], h[(y * 5 + (4 - x)) * 3 + c]);
                    Assert.Equal(img[(y * 5 + x) * 3 + c], v[((3 - y) * 5 + x) * 3 + c]);
                }
    }

    [Fact]
    public void Identity_leaves_the_image_untouched()
    {
        var img = RandomImage(8, 8, 2);
        var copy = (byte[])img.Clone();
        Augmentation.Apply(copy, 8, 8, AugmentationParameters.Identity);
        Assert.Equal(img, copy);
    }

    [Fact]
    public void Lab_round_trip_is_lossless_for_bytes()
    {
        // Factor 1.0000001 forces the CIELAB round trip without a visible change.
        var img = RandomImage(16, 16, 3);
        var copy = (byte[])img.Clone();
        Augmentation.Apply(copy, 16, 16, AugmentationParameters.Identity with { LuminanceFactor = 1.0000001 });
        Assert.Equal(img, copy);
    }

    private static (double, double, double) LabHelper(float r, float g, float b)
    {
        // Independent sRGB -> CIELAB (D65) for the check.
        static double Lin(double c) => c <= 0.04045 ? c / 12.92 : Math.Pow((c + 0.055) / 1.055, 2.4);
        static double F(double t) => t > 216.0 / 24389 ? Math.Cbrt(t) : (24389.0 / 27 * t + 16) / 116;
        double R = Lin(r), G = Lin(g), B = Lin(b);
        double x = (0.4124564 * R + 0.3575761 * G + 0.1804375 * B) / 0.95047;
        double y = 0.2126729 * R + 0.7151522 * G + 0.0721750 * B;
        double z = (0.0193339 * R + 0.1191920 * G + 0.9503041 * B) / 1.08883;
        return (116 * F(y) - 16, 500 * (F(x) - F(y)), 200 * (F(y) - F(z)));
    }

    [Fact]
    public void Luminance_scales_L_and_keeps_hue_and_chroma()
    {
        var bytes = RandomImage(8, 8, 4);
        var img = bytes.Select(b => b / 255f).ToArray();
        var before = (float[])img.Clone();
        Augmentation.Apply(img, 8, 8, AugmentationParameters.Identity with { LuminanceFactor = 1.1 });
        int checkedPixels = 0;
        for (int i = 0; i < img.Length; i += 3)
        {
            var b = LabHelper(before[i], before[i + 1], before[i + 2]);
            var a = LabHelper(img[i], img[i + 1], img[i + 2]);
            if (img[i] is <= 0f or >= 1f || img[i + 1] is <= 0f or >= 1f || img[i + 2] is <= 0f or >= 1f) continue; // clipped to gamut
            checkedPixels++;
            Assert.Equal(b.Item1 * 1.1, a.Item1, 1e-3);
            Assert.Equal(b.Item2, a.Item2, 1e-3);
            Assert.Equal(b.Item3, a.Item3, 1e-3);
        }
        Assert.True(checkedPixels > 40);
    }

    [Fact]
    public void Contrast_spreads_L_about_its_mean_and_gamma_darkens_midtones()
    {
        var img = RandomImage(8, 8, 5).Select(b => b / 255f).ToArray();
        double Spread(float[] x)
        {
            var ls = Enumerable.Range(0, 64).Select(p => LabHelper(x[p * 3], x[p * 3 + 1], x[p * 3 + 2]).Item1).ToArray();
            double m = ls.Average();
            return Math.Sqrt(ls.Sum(l => (l - m) * (l - m)) / 64);
        }
        var hi = (float[])img.Clone();
        Augmentation.Apply(hi, 8, 8, AugmentationParameters.Identity with { Contrast = 1.2 });
        Assert.True(Spread(hi) > Spread(img) * 1.1);
        var g = (float[])img.Clone();
        Augmentation.Apply(g, 8, 8, AugmentationParameters.Identity with { Gamma = 1.2 });
        Assert.True(g.Sum() < img.Sum());
    }

    [Fact]
    public void Drawing_is_deterministic_per_seed_and_index_and_covers_the_options()
    {
        var a = Enumerable.Range(0, 200).Select(i => { var r = SeededRandom.For(9, 1, (ulong)i); return Augmentation.Draw(ref r); }).ToList();
        var b = Enumerable.Range(0, 200).Select(i => { var r = SeededRandom.For(9, 1, (ulong)i); return Augmentation.Draw(ref r); }).ToList();
        Assert.Equal(a, b);
        Assert.InRange(a.Count(p => p.FlipHorizontal), 70, 130);
        Assert.InRange(a.Count(p => p.FlipVertical), 70, 130);
        Assert.Contains(a, p => p.LuminanceFactor != 1);
        Assert.Contains(a, p => p.Gamma != 1);
        Assert.All(a, p => Assert.InRange(p.Contrast, 0.8, 1.2));
        Assert.All(a, p => Assert.False(p.LuminanceFactor != 1 && p.Gamma != 1));
    }

    [Fact]
    public void Wrong_sizes_are_refused()
    {
        Assert.Throws<ArgumentException>(() => Augmentation.Apply(new byte[10], 2, 2, AugmentationParameters.Identity));
    }

    [Fact]
    public void Gray_world_gains_equalise_channel_means()
    {
        var gw = new GrayWorld();
        var img = new byte[4 * 3];
        for (int p = 0; p < 4; p++) { img[p * 3] = 200; img[p * 3 + 1] = 100; img[p * 3 + 2] = 60; }
        gw.Add(img);
        var gains = gw.Gains();
        Assert.Equal(120.0 / 200, gains[0], 5);
        Assert.Equal(120.0 / 100, gains[1], 5);
        Assert.Equal(2.0, gains[2], 5);
        QanaEdge.Imaging.Preprocessor.ApplyColorGains(img, gains);
        Assert.Equal(new byte[] { 120, 120, 120 }, img[..3]);
        Assert.Throws<InvalidOperationException>(() => new GrayWorld().Gains());
        Assert.Throws<ArgumentOutOfRangeException>(() => QanaEdge.Imaging.Preprocessor.ApplyColorGains(img, [1f, 0f, 1f]));
    }

    /// <summary>Mixup's λ ~ Beta(a, a): symmetric about ½, uniform for a = 1, piled at 0 and 1 for small a.</summary>
    [Theory]
    [InlineData(1.0, 0.25)]
    [InlineData(0.2, 0.707)]
    public void SymmetricBetaHasTheRightMeanAndMassAtTheEnds(double a, double expectedOuterMass)
    {
        var rng = SeededRandom.For(5, 6, 7);
        var draws = Enumerable.Range(0, 20000).Select(_ => rng.NextSymmetricBeta(a)).ToArray();
        Assert.All(draws, x => Assert.InRange(x, 0.0, 1.0));
        Assert.InRange(draws.Average(), 0.49, 0.51);
        // P(λ < 1/8 or λ > 7/8): 0.25 for the uniform; about 0.707 for Beta(0.2, 0.2).
        Assert.InRange(draws.Count(x => x < 0.125 || x > 0.875) / 20000.0, expectedOuterMass - 0.015, expectedOuterMass + 0.015);
        Assert.Throws<ArgumentOutOfRangeException>(() => rng.NextSymmetricBeta(1.5));
    }
}
