namespace QanaEdge.Training.Data;

/// <summary>The ranges augmentation draws from (training split only). Defaults follow DESIGN.md: flips with
/// p = 0.5, a luminance change on CIELAB L (a multiplicative factor or a gamma, equally likely), a contrast
/// change of L about the image's mean L. a* and b* are never touched, so hue is never shifted.</summary>
public sealed record AugmentationOptions
{
    public double HorizontalFlipProbability { get; init; } = 0.5;
    public double VerticalFlipProbability { get; init; } = 0.5;
    /// <summary>Probability that an image gets a luminance change at all.</summary>
    public double LuminanceProbability { get; init; } = 0.8;
    /// <summary>L ← L·f with f uniform in this range.</summary>
    public double LuminanceFactorMin { get; init; } = 0.85;
    public double LuminanceFactorMax { get; init; } = 1.15;
    /// <summary>L ← 100·(L/100)^γ with log γ uniform in [log min, log max].</summary>
    public double GammaMin { get; init; } = 0.8;
    public double GammaMax { get; init; } = 1.25;
    /// <summary>Probability of a contrast change; L ← mean + c·(L − mean), c uniform in the range.</summary>
    public double ContrastProbability { get; init; } = 0.5;
    public double ContrastMin { get; init; } = 0.8;
    public double ContrastMax { get; init; } = 1.2;

    public static AugmentationOptions Default { get; } = new();
}

/// <summary>What one image gets; drawn by <see cref="Augmentation.Draw"/> and applied by
/// <see cref="Augmentation.Apply(Span{float}, int, int, in AugmentationParameters)"/>.</summary>
public readonly record struct AugmentationParameters(bool FlipHorizontal, bool FlipVertical,
    double LuminanceFactor, double Gamma, double Contrast)
{
    public static AugmentationParameters Identity => new(false, false, 1, 1, 1);
    /// <summary>True when the lightness channel is changed (the CIELAB round trip is skipped otherwise).</summary>
    public bool ChangesLightness => LuminanceFactor != 1 || Gamma != 1 || Contrast != 1;
}

/// <summary>
/// Seeded training augmentation on HWC RGB images in place, float in [0, 1] or bytes. No allocation:
/// flips swap pixels, the lightness change is two passes (the mean L, then the per-pixel transform).
/// </summary>
public static class Augmentation
{
    /// <summary>Parameters for one image. Use <see cref="SeededRandom.For"/>(seed, epoch, index) for a
    /// generator so the result does not depend on loading order.</summary>
    public static AugmentationParameters Draw(ref SeededRandom rng, AugmentationOptions? options = null)
    {
        var o = options ?? AugmentationOptions.Default;
        bool h = rng.NextBool(o.HorizontalFlipProbability);
        bool v = rng.NextBool(o.VerticalFlipProbability);
        double factor = 1, gamma = 1, contrast = 1;
        if (rng.NextBool(o.LuminanceProbability))
        {
            if (rng.NextBool(0.5)) factor = rng.NextDouble(o.LuminanceFactorMin, o.LuminanceFactorMax);
            else gamma = Math.Exp(rng.NextDouble(Math.Log(o.GammaMin), Math.Log(o.GammaMax)));
        }
        if (rng.NextBool(o.ContrastProbability)) contrast = rng.NextDouble(o.ContrastMin, o.ContrastMax);
        return new AugmentationParameters(h, v, factor, gamma, contrast);
    }

    public static void Apply(Span<float> hwc, int height, int width, in AugmentationParameters p)
    {
        Check(hwc.Length, height, width);
        Flip(hwc, height, width, p);
        if (!p.ChangesLightness) return;
        double mean = 0;
        for (int i = 0; i < hwc.Length; i += 3)
            mean += CieLab.Lightness(CieLab.ToLinear(Clamp01(hwc[i])), CieLab.ToLinear(Clamp01(hwc[i + 1])), CieLab.ToLinear(Clamp01(hwc[i + 2])));
        mean /= height * width;
        for (int i = 0; i < hwc.Length; i += 3)
        {
            var (l, a, b) = CieLab.FromLinear(CieLab.ToLinear(Clamp01(hwc[i])), CieLab.ToLinear(Clamp01(hwc[i + 1])), CieLab.ToLinear(Clamp01(hwc[i + 2])));
            var (r, g, bl) = CieLab.ToSrgb(NewLightness(l, mean, p), a, b);
            hwc[i] = (float)Clamp01(r); hwc[i + 1] = (float)Clamp01(g); hwc[i + 2] = (float)Clamp01(bl);
        }
    }

    public static void Apply(Span<byte> hwc, int height, int width, in AugmentationParameters p)
    {
        Check(hwc.Length, height, width);
        Flip(hwc, height, width, p);
        if (!p.ChangesLightness) return;
        double mean = 0;
        for (int i = 0; i < hwc.Length; i += 3)
            mean += CieLab.Lightness(CieLab.LinearOf(hwc[i]), CieLab.LinearOf(hwc[i + 1]), CieLab.LinearOf(hwc[i + 2]));
        mean /= height * width;
        for (int i = 0; i < hwc.Length; i += 3)
        {
            var (l, a, b) = CieLab.FromLinear(CieLab.LinearOf(hwc[i]), CieLab.LinearOf(hwc[i + 1]), CieLab.LinearOf(hwc[i + 2]));
            var (r, g, bl) = CieLab.ToSrgb(NewLightness(l, mean, p), a, b);
            hwc[i] = ToByte(r); hwc[i + 1] = ToByte(g); hwc[i + 2] = ToByte(bl);
        }
    }

    /// <summary>Factor or gamma first, then contrast about the original mean, kept in [0, 100].</summary>
    private static double NewLightness(double l, double mean, in AugmentationParameters p)
    {
        double x = Math.Clamp(l, 0, 100);
        if (p.LuminanceFactor != 1) x *= p.LuminanceFactor;
        if (p.Gamma != 1) x = 100 * Math.Pow(x / 100, p.Gamma);
        if (p.Contrast != 1) x = mean + p.Contrast * (x - mean);
        return Math.Clamp(x, 0, 100);
    }

    private static void Flip<T>(Span<T> hwc, int height, int width, in AugmentationParameters p)
    {
        int stride = width * 3;
        if (p.FlipHorizontal)
            for (int y = 0; y < height; y++)
            {
                var row = hwc.Slice(y * stride, stride);
                for (int x = 0, xr = width - 1; x < xr; x++, xr--)
                    for (int c = 0; c < 3; c++) (row[x * 3 + c], row[xr * 3 + c]) = (row[xr * 3 + c], row[x * 3 + c]);
            }
        if (p.FlipVertical)
            for (int y = 0, yr = height - 1; y < yr; y++, yr--)
            {
                Span<T> top = hwc.Slice(y * stride, stride), bottom = hwc.Slice(yr * stride, stride);
                for (int i = 0; i < stride; i++) (top[i], bottom[i]) = (bottom[i], top[i]);
            }
    }

    private static void Check(int length, int height, int width)
    {
        if (height <= 0 || width <= 0 || length != height * width * 3)
            throw new ArgumentException($"expected an HWC RGB image of {height}×{width}×3 = {height * width * 3} values, got {length}");
    }

    private static double Clamp01(double v) => v < 0 ? 0 : v > 1 ? 1 : v;
    private static byte ToByte(double v) => (byte)Math.Clamp((int)Math.Round(v * 255, MidpointRounding.AwayFromZero), 0, 255);
}
