using System.Runtime.CompilerServices;
using QanaEdge.Model.Graph;

namespace QanaEdge.Runtime;

/// <summary>
/// A real multiplier m ≥ 0 stored as a Q31 integer M in [2^30, 2^31) and a shift:
/// m ≈ M · 2^(Shift − 31). The engine applies it as round(acc · M / 2^(31 − Shift)) with the product
/// taken exactly in 64 bits and ONE rounding, half away from zero (see <see cref="Requant"/>).
/// </summary>
public readonly record struct QuantizedMultiplier(int Multiplier, int Shift)
{
    /// <summary>The right shift n = 31 − Shift applied after the 64-bit product.</summary>
    public int RightShift => 31 - Shift;

    /// <summary>The real value this multiplier represents.</summary>
    public double Real => Multiplier * Math.Pow(2, Shift - 31);

    /// <summary>
    /// Quantizes a real multiplier: m = f · 2^Shift with f in [1/2, 1), M = round(f · 2^31) (half away from
    /// zero). Multipliers so small that every int32 accumulator rounds to 0 become M = 0, n = 62.
    /// </summary>
    public static QuantizedMultiplier FromReal(double real)
    {
        if (!double.IsFinite(real) || real < 0)
            throw new InvalidGraphException($"multiplier {real} is not a finite non-negative number");
        if (real == 0) return new QuantizedMultiplier(0, 31 - Requant.MaxRightShift);
        // The package validation refuses with the same rule (IntegerRange.MultiplierFits), so this throws only for a
        // graph built in code.
        var (m, exponent) = IntegerRange.Normalize(real);
        if (exponent > IntegerRange.MaxMultiplierExponent)
            throw new InvalidGraphException($"multiplier {real} is too large (at most 2^30 is representable)");
        if (31 - exponent > Requant.MaxRightShift) return new QuantizedMultiplier(0, 31 - Requant.MaxRightShift);
        return new QuantizedMultiplier((int)m, exponent);
    }
}

/// <summary>
/// The one requantization rule of the project:
/// q = clamp(zp_out + RoundHalfAwayFromZero(acc · M / 2^n), lo, hi), n = 31 − shift, the product exact in 64 bits.
/// Training's fake quantization, the float interpreter's tie handling and every optimized kernel reproduce it.
/// </summary>
public static class Requant
{
    /// <summary>Largest right shift used: |acc · M| &lt; 2^62, so beyond 62 every result rounds to 0.</summary>
    public const int MaxRightShift = 62;

    /// <summary>RoundHalfAwayFromZero(p / 2^n) for 1 ≤ n ≤ 62 and |p| &lt; 2^62, in integers.</summary>
    /// <remarks>Adding 2^(n−1) then flooring rounds ties up; for negative p one less is added
    /// (p &gt;&gt; 63 is −1), which turns the floor of a negative tie into "away from zero".</remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long RoundShift(long p, int n) => (p + (1L << (n - 1)) + (p >> 63)) >> n;

    /// <summary>RoundHalfAwayFromZero(acc · M / 2^n), unclamped.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long Scale(int acc, int multiplier, int rightShift) => RoundShift((long)acc * multiplier, rightShift);

    /// <summary>The full rule: offset by the output zero point, then clamp to [lo, hi].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Apply(int acc, int multiplier, int rightShift, int zeroPoint, int lo, int hi)
    {
        long v = zeroPoint + RoundShift((long)acc * multiplier, rightShift);
        return v < lo ? lo : v > hi ? hi : (int)v;
    }

    /// <summary>Same as <see cref="Apply(int,int,int,int,int,int)"/> with a <see cref="QuantizedMultiplier"/>.</summary>
    public static int Apply(int acc, QuantizedMultiplier m, int zeroPoint, int lo, int hi)
        => Apply(acc, m.Multiplier, m.RightShift, zeroPoint, lo, hi);
}

/// <summary>A graph the engine cannot execute (bad shape, missing weights, impossible multiplier). One clear reason.</summary>
public sealed class InvalidGraphException(string message) : Exception(message);
