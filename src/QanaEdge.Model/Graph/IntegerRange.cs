namespace QanaEdge.Model.Graph;

/// <summary>
/// The integer parameters an engine derives from a graph's real scales and weights, and the ranges they must fit.
/// The validation refuses a graph whose parameters fall outside them, and the integer engine derives its multipliers
/// and checks its accumulators with the same functions, so a package that loads is one the engine prepares.
/// </summary>
public static class IntegerRange
{
    /// <summary>Largest exponent e of a multiplier m = f·2^e (f in [1/2, 1)): the right shift 31 − e stays at least 1.</summary>
    public const int MaxMultiplierExponent = 30;

    /// <summary>
    /// Splits a positive finite real multiplier into a Q31 integer M in [2^30, 2^31] and an exponent e with
    /// m ≈ M · 2^(e − 31): f = m / 2^e in [1/2, 1), M = round(f · 2^31), half away from zero, carried into e when it
    /// rounds to 2^31.
    /// </summary>
    public static (long Multiplier, int Exponent) Normalize(double real)
    {
        int exponent = Math.ILogB(real) + 1;
        double fraction = Math.ScaleB(real, -exponent);
        long m = (long)Math.Round(fraction * (1L << 31), MidpointRounding.AwayFromZero);
        if (m == 1L << 31) { m >>= 1; exponent++; }
        return (m, exponent);
    }

    /// <summary>True when a requantization multiplier can be represented: finite, not negative, and (once rounded to
    /// its Q31 form) below 2^30.</summary>
    public static bool MultiplierFits(double real) =>
        double.IsFinite(real) && real >= 0 && (real == 0 || Normalize(real).Exponent <= MaxMultiplierExponent);

    /// <summary>
    /// The largest magnitude an int32 accumulator bias + Σ w·(x − z) can reach: |bias| + 255·Σ|w| over the taps of one
    /// output (every |x − z| is at most 255). <paramref name="stride"/> steps through interleaved taps (depthwise
    /// weights are [Kh, Kw, C]: one channel's taps lie C apart).
    /// </summary>
    public static long AccumulatorBound(ReadOnlySpan<sbyte> weights, int bias, int first = 0, int stride = 1)
    {
        long sum = Math.Abs((long)bias);
        for (int i = first; i < weights.Length; i += stride) sum += Math.Abs((int)weights[i]) * 255L;
        return sum;
    }

    /// <summary>True when <see cref="AccumulatorBound"/> leaves the accumulator inside int32.</summary>
    public static bool AccumulatorFits(long bound) => bound < int.MaxValue;
}
