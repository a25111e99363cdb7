using System.Numerics;
using QanaEdge.Runtime;
using QanaEdge.Runtime.Kernels;

namespace QanaEdge.Runtime.Tests;

public class RequantTests
{
    // Oracle: exact rational arithmetic with BigInteger, ties away from zero.
    private static long Oracle(long acc, long m, int n)
    {
        var p = new BigInteger(acc) * m;
        var d = BigInteger.One << n;
        var q = BigInteger.DivRem(BigInteger.Abs(p), d, out var rem);
        if (rem * 2 >= d) q += 1;
        return (long)(p.Sign < 0 ? -q : q);
    }

    [Theory]
    [InlineData(3, 1 << 30, 31, 2)]     // 3 · 0.5 = 1.5 → 2
    [InlineData(-3, 1 << 30, 31, -2)]   // −1.5 → −2 (away from zero, not toward +∞ as gemmlowp's high-mul)
    [InlineData(1, 1 << 30, 31, 1)]     // 0.5 → 1
    [InlineData(-1, 1 << 30, 31, -1)]   // −0.5 → −1
    [InlineData(5, 1 << 30, 32, 1)]     // 1.25 → 1
    [InlineData(-5, 1 << 30, 32, -1)]   // −1.25 → −1
    [InlineData(6, 1 << 30, 32, 2)]     // 1.5 → 2
    [InlineData(-6, 1 << 30, 32, -2)]   // −1.5 → −2
    [InlineData(-2, 1 << 30, 31, -1)]   // exact −1
    [InlineData(0, int.MaxValue, 40, 0)]
    public void Ties_round_half_away_from_zero(int acc, int m, int n, long expected)
    {
        Assert.Equal(expected, Requant.Scale(acc, m, n));
        Assert.Equal(expected, Oracle(acc, m, n));
    }

    [Fact]
    public void Matches_exact_rational_rounding_on_random_values_and_constructed_ties()
    {
        var rng = new Random(7);
        for (int i = 0; i < 200_000; i++)
        {
            int acc = i % 3 == 0 ? rng.Next(-300, 300) : rng.Next(int.MinValue, int.MaxValue);
            int m = rng.Next(1 << 30, int.MaxValue);
            int n = rng.Next(1, Requant.MaxRightShift + 1);
            Assert.Equal(Oracle(acc, m, n), Requant.Scale(acc, m, n));
        }
        // Exact ties: acc·M = (2k+1)·2^(n−1).
        for (int n = 1; n <= 40; n++)
        for (int k = -50; k <= 50; k++)
        {
            long p = (2L * k + 1) << (n - 1);
            Assert.Equal(Oracle(p, 1, n), Requant.RoundShift(p, n));
            Assert.Equal(k >= 0 ? k + 1 : k, Requant.RoundShift(p, n));
        }
    }

    [Fact]
    public void Apply_offsets_then_clamps()
    {
        Assert.Equal(127, Requant.Apply(int.MaxValue, int.MaxValue, 1, 0, -128, 127));
        Assert.Equal(-128, Requant.Apply(int.MinValue, int.MaxValue, 1, 0, -128, 127));
        Assert.Equal(-128 + 2, Requant.Apply(3, 1 << 30, 31, -128, -128, 127));
        Assert.Equal(5, Requant.Apply(1000, 1 << 30, 31, 0, -3, 5));
    }

    [Theory]
    [InlineData(1.0)]
    [InlineData(0.5)]
    [InlineData(0.0001234)]
    [InlineData(0.75)]
    [InlineData(3.999)]
    [InlineData(1e-20)]
    public void Multiplier_represents_the_real_value(double real)
    {
        var m = QuantizedMultiplier.FromReal(real);
        if (m.Multiplier == 0) { Assert.True(real < Math.Pow(2, -31)); return; }
        Assert.InRange(m.Multiplier, 1 << 30, int.MaxValue);
        Assert.True(Math.Abs(m.Real - real) <= real * Math.Pow(2, -30), $"{m.Real} vs {real}");
    }

    [Fact]
    public void Multiplier_rejects_bad_values()
    {
        Assert.Throws<InvalidGraphException>(() => QuantizedMultiplier.FromReal(double.NaN));
        Assert.Throws<InvalidGraphException>(() => QuantizedMultiplier.FromReal(-1));
        Assert.Throws<InvalidGraphException>(() => QuantizedMultiplier.FromReal(1e12));
        Assert.Equal(0, QuantizedMultiplier.FromReal(0).Multiplier);
    }

    [Fact]
    public void Vector_helpers_match_scalar_for_every_length_0_to_256()
    {
        var rng = new Random(11);
        for (int len = 0; len <= 256; len++)
        {
            var x = new sbyte[len];
            for (int i = 0; i < len; i++) x[i] = (sbyte)(rng.Next(3) == 0 ? -5 : rng.Next(-128, 128));
            Assert.Equal(x.Count(v => v != -5), VectorOps.CountEvents(x, -5));
            var pairs = new int[len];
            for (int i = 0; i < len; i++) pairs[i] = rng.Next(3) == 0 ? 0 : rng.Next(int.MinValue, int.MaxValue);
            Assert.Equal(pairs.Count(v => v == 0), VectorOps.CountZeros(pairs));

            var acc = new int[len];
            var mult = new long[len];
            int n = rng.Next(20, 45);
            for (int i = 0; i < len; i++)
            {
                acc[i] = rng.Next(-2_000_000, 2_000_000);
                mult[i] = rng.NextInt64(1L << 20, 1L << 38);
                if (n > 31 && i % 5 == 0) { mult[i] = 1L << 30; acc[i] = (2 * rng.Next(-100, 100) + 1) << (n - 31); } // ties when n > 31
            }
            int zp = rng.Next(-20, 20), lo = rng.Next(-128, -100), hi = rng.Next(100, 128);
            var got = new sbyte[len];
            VectorOps.Requantize(acc, mult, n, got, zp, lo, hi);
            for (int i = 0; i < len; i++)
            {
                long v = zp + Oracle(acc[i], mult[i], n);
                Assert.Equal((sbyte)Math.Clamp(v, lo, hi), got[i]);
            }
        }
    }

    [Fact]
    public void Input_quantizer_subtracts_128()
    {
        for (int len = 0; len <= 256; len += 17)
        {
            var rgb = Enumerable.Range(0, len).Select(i => (byte)(i * 37)).ToArray();
            var q = new sbyte[len];
            InputQuantizer.Quantize(rgb, q);
            for (int i = 0; i < len; i++) Assert.Equal(rgb[i] - 128, q[i]);
        }
        Assert.Throws<ArgumentException>(() => InputQuantizer.Quantize(new byte[3], new sbyte[2]));
    }
}
