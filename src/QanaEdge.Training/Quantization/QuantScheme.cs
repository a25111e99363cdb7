using QanaEdge.Model;

namespace QanaEdge.Training.Quantization;

/// <summary>Integer grid of one activation tensor: real = Scale·(q − ZeroPoint), q ∈ [QMin, QMax].</summary>
public readonly record struct ActivationGrid(double Scale, int ZeroPoint, int QMin, int QMax);

/// <summary>
/// How a profile quantizes. <c>paper8</c>: affine int8 activations, symmetric int8 per-channel weights.
/// <c>akd1000</c>: after the 8-bit input layer, symmetric 4-bit activations (zero point 0, 16 levels) and
/// 4-bit weights in [−8, 7], every scale a power of two (the chip's constraints, ProfileChecker).
/// </summary>
public sealed class QuantScheme
{
    public QuantizationProfile Profile { get; }
    public QuantScheme(QuantizationProfile profile) => Profile = profile;

    /// <summary>Grid for a tensor whose real values lie in [lo, hi] (a bounded activation passes its bounds).</summary>
    public ActivationGrid Activation(double lo, double hi, bool firstLayer = false)
    {
        lo = Math.Min(lo, 0); hi = Math.Max(hi, 0);
        if (hi - lo < 1e-6) hi = lo + 1e-6;
        if (Profile == QuantizationProfile.Paper8 || firstLayer)
        {
            double scale = (hi - lo) / 255.0;
            int zp = (int)Math.Clamp(Math.Round(-128 - lo / scale, MidpointRounding.AwayFromZero), -128, 127);
            return new ActivationGrid(scale, zp, -128, 127);
        }
        if (lo >= 0)
            return new ActivationGrid(PowerOfTwoAtLeast(hi / 15.0), 0, 0, 15);
        return new ActivationGrid(PowerOfTwoAtLeast(Math.Max(-lo / 8.0, hi / 7.0)), 0, -8, 7);
    }

    /// <summary>Largest weight code (symmetric): 127 for 8-bit, 7 for the chip's 4-bit layers.</summary>
    public int WeightQMax(bool firstLayer) => Profile == QuantizationProfile.Paper8 || firstLayer ? 127 : 7;
    public int WeightQMin(bool firstLayer) => Profile == QuantizationProfile.Paper8 || firstLayer ? -127 : -8;

    /// <summary>Per-output-channel weight scale for a channel whose largest magnitude is <paramref name="maxAbs"/>.</summary>
    public double WeightScale(double maxAbs, bool firstLayer)
    {
        double s = Math.Max(maxAbs, 1e-8) / WeightQMax(firstLayer);
        return Profile == QuantizationProfile.Akd1000 ? PowerOfTwoAtLeast(s) : s;
    }

    public static double PowerOfTwoAtLeast(double x) => Math.Pow(2, Math.Ceiling(Math.Log2(x)));
}
