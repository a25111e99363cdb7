namespace QanaEdge.Training.Data;

/// <summary>
/// xoshiro256** seeded through SplitMix64. Our own generator rather than System.Random so that a seed gives
/// the same split, augmentation and synthetic samples on every .NET version and architecture.
/// A struct: pass it by ref, copying it forks the stream.
/// </summary>
public struct SeededRandom
{
    private ulong _s0, _s1, _s2, _s3;

    public SeededRandom(ulong seed)
    {
        ulong x = seed;
        _s0 = SplitMix(ref x); _s1 = SplitMix(ref x); _s2 = SplitMix(ref x); _s3 = SplitMix(ref x);
    }

    /// <summary>A generator for one item of a larger job (e.g. image i of epoch e), independent of the order
    /// in which items are processed, so parallel loading stays deterministic.</summary>
    public static SeededRandom For(ulong seed, ulong a, ulong b = 0)
    {
        ulong x = seed ^ 0x9E3779B97F4A7C15UL * (a + 1);
        ulong h = SplitMix(ref x);
        x = h ^ 0xD1B54A32D192ED03UL * (b + 1);
        return new SeededRandom(SplitMix(ref x));
    }

    private static ulong SplitMix(ref ulong x)
    {
        ulong z = x += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    public ulong NextUInt64()
    {
        ulong result = ulong.RotateLeft(_s1 * 5, 7) * 9;
        ulong t = _s1 << 17;
        _s2 ^= _s0; _s3 ^= _s1; _s1 ^= _s2; _s0 ^= _s3;
        _s2 ^= t;
        _s3 = ulong.RotateLeft(_s3, 45);
        return result;
    }

    /// <summary>Uniform in [0, 1) with 53 random bits.</summary>
    public double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));

    /// <summary>Uniform in [lo, hi).</summary>
    public double NextDouble(double lo, double hi) => lo + (hi - lo) * NextDouble();

    /// <summary>Uniform integer in [0, n), without modulo bias (Lemire's method).</summary>
    public int NextInt(int n)
    {
        if (n <= 0) throw new ArgumentOutOfRangeException(nameof(n), "must be positive");
        ulong range = (ulong)n;
        UInt128 m = (UInt128)NextUInt64() * range;
        if ((ulong)m < range)
        {
            ulong threshold = (0UL - range) % range;
            while ((ulong)m < threshold) m = (UInt128)NextUInt64() * range;
        }
        return (int)(ulong)(m >> 64);
    }

    /// <summary>True with probability p.</summary>
    public bool NextBool(double p) => NextDouble() < p;

    /// <summary>Standard normal (Box–Muller; the second value is discarded to keep the state simple).</summary>
    public double NextGaussian()
    {
        double u1 = 1.0 - NextDouble(), u2 = NextDouble();
        return Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2.0 * Math.PI * u2);
    }

    /// <summary>Beta(a, a) for a in (0, 1] by Jöhnk's rejection method (mixup's mixing weight).</summary>
    public double NextSymmetricBeta(double a)
    {
        if (!(a > 0 && a <= 1)) throw new ArgumentOutOfRangeException(nameof(a), "Jöhnk's method needs 0 < a <= 1");
        while (true)
        {
            double x = Math.Pow(NextDouble(), 1 / a), y = Math.Pow(NextDouble(), 1 / a);
            if (x + y <= 1 && x + y > 0) return x / (x + y);
        }
    }

    /// <summary>Fisher–Yates shuffle in place.</summary>
    public void Shuffle<T>(Span<T> items)
    {
        for (int i = items.Length - 1; i > 0; i--)
        {
            int j = NextInt(i + 1);
            (items[i], items[j]) = (items[j], items[i]);
        }
    }
}
