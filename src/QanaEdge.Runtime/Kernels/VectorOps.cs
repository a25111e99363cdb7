using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace QanaEdge.Runtime.Kernels;

/// <summary>
/// Vector helpers shared by the optimized kernels. Each has a scalar twin in <see cref="Requant"/> or a
/// plain loop, and the tests compare them over every length 0..256.
/// </summary>
public static class VectorOps
{
    /// <summary>Number of values different from the zero point: the events a layer receives.</summary>
    public static long CountEvents(ReadOnlySpan<sbyte> x, sbyte zeroPoint)
    {
        int i = 0;
        long n = 0;
        ref sbyte r = ref MemoryMarshal.GetReference(x);
        if (Vector512.IsHardwareAccelerated && x.Length >= 64)
        {
            var z = Vector512.Create(zeroPoint);
            for (; i + 64 <= x.Length; i += 64)
                n += 64 - BitOperations.PopCount(Vector512.Equals(Vector512.LoadUnsafe(ref r, (nuint)i), z).ExtractMostSignificantBits());
        }
        if (Vector256.IsHardwareAccelerated)
        {
            var z = Vector256.Create(zeroPoint);
            for (; i + 32 <= x.Length; i += 32)
                n += 32 - BitOperations.PopCount(Vector256.Equals(Vector256.LoadUnsafe(ref r, (nuint)i), z).ExtractMostSignificantBits());
        }
        if (Vector128.IsHardwareAccelerated)
        {
            var z = Vector128.Create(zeroPoint);
            for (; i + 16 <= x.Length; i += 16)
                n += 16 - BitOperations.PopCount(Vector128.Equals(Vector128.LoadUnsafe(ref r, (nuint)i), z).ExtractMostSignificantBits());
        }
        for (; i < x.Length; i++) n += x[i] != zeroPoint ? 1 : 0;
        return n;
    }

    /// <summary>
    /// dst[i] = clamp(zp + RoundHalfAwayFromZero(acc[i]·mult[i] / 2^n), lo, hi) with one shared right shift n
    /// and per-element 64-bit multipliers (per-channel multipliers pre-aligned to n, see <see cref="AlignMultipliers"/>).
    /// Exact: the caller guarantees |acc·mult| &lt; 2^62.
    /// </summary>
    public static void Requantize(ReadOnlySpan<int> acc, ReadOnlySpan<long> mult, int n, Span<sbyte> dst, int zp, int lo, int hi)
    {
        if (mult.Length < acc.Length || dst.Length < acc.Length) throw new ArgumentException("spans too short");
        int i = 0;
        ref int ra = ref MemoryMarshal.GetReference(acc);
        ref long rm = ref MemoryMarshal.GetReference(mult);
        ref sbyte rd = ref MemoryMarshal.GetReference(dst);
        if (Avx512F.IsSupported && Avx512DQ.IsSupported && acc.Length >= 16)
        {
            var half = Vector512.Create(1L << (n - 1));
            var vz = Vector512.Create((long)zp);
            var vlo = Vector512.Create((long)lo);
            var vhi = Vector512.Create((long)hi);
            for (; i + 16 <= acc.Length; i += 16)
            {
                var a = Vector512.LoadUnsafe(ref ra, (nuint)i);
                var p0 = Vector512.WidenLower(a) * Vector512.LoadUnsafe(ref rm, (nuint)i);
                var p1 = Vector512.WidenUpper(a) * Vector512.LoadUnsafe(ref rm, (nuint)(i + 8));
                var r0 = Vector512.Min(Vector512.Max(vz + Vector512.ShiftRightArithmetic(p0 + half + Vector512.ShiftRightArithmetic(p0, 63), n), vlo), vhi);
                var r1 = Vector512.Min(Vector512.Max(vz + Vector512.ShiftRightArithmetic(p1 + half + Vector512.ShiftRightArithmetic(p1, 63), n), vlo), vhi);
                var q = Vector512.Narrow(r0, r1);                       // 16 × int32, each already in [lo, hi]
                Avx512F.ConvertToVector128SByte(q).StoreUnsafe(ref rd, (nuint)i);
            }
        }
        else if (Vector128.IsHardwareAccelerated && acc.Length >= 8)
        {
            var half = Vector128.Create(1L << (n - 1));
            var vz = Vector128.Create((long)zp);
            var vlo = Vector128.Create((long)lo);
            var vhi = Vector128.Create((long)hi);
            for (; i + 8 <= acc.Length; i += 8)
            {
                var a0 = Vector128.LoadUnsafe(ref ra, (nuint)i);
                var a1 = Vector128.LoadUnsafe(ref ra, (nuint)(i + 4));
                var r00 = Round(Vector128.WidenLower(a0) * Vector128.LoadUnsafe(ref rm, (nuint)i), half, n, vz, vlo, vhi);
                var r01 = Round(Vector128.WidenUpper(a0) * Vector128.LoadUnsafe(ref rm, (nuint)(i + 2)), half, n, vz, vlo, vhi);
                var r10 = Round(Vector128.WidenLower(a1) * Vector128.LoadUnsafe(ref rm, (nuint)(i + 4)), half, n, vz, vlo, vhi);
                var r11 = Round(Vector128.WidenUpper(a1) * Vector128.LoadUnsafe(ref rm, (nuint)(i + 6)), half, n, vz, vlo, vhi);
                var s = Vector128.Narrow(Vector128.Narrow(r00, r01), Vector128.Narrow(r10, r11));  // 8 × int16
                var b = Vector128.Narrow(s, s);                                                     // low 8 bytes
                Unsafe.WriteUnaligned(ref Unsafe.As<sbyte, byte>(ref Unsafe.Add(ref rd, i)), b.AsInt64().ToScalar());
            }
        }
        for (; i < acc.Length; i++)
        {
            long v = zp + Requant.RoundShift((long)acc[i] * mult[i], n);
            dst[i] = (sbyte)(v < lo ? lo : v > hi ? hi : v);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<long> Round(Vector128<long> p, Vector128<long> half, int n, Vector128<long> z, Vector128<long> lo, Vector128<long> hi)
        => Vector128.Min(Vector128.Max(z + Vector128.ShiftRightArithmetic(p + half + Vector128.ShiftRightArithmetic(p, 63), n), lo), hi);

    /// <summary>
    /// Rewrites per-channel (M_c, n_c) as (M_c·2^(n − n_c), n) with the common n = max n_c: the same exact
    /// quotient acc·M_c/2^n_c. Returns false (keep the scalar path) when some |acc|·M could reach 2^62.
    /// </summary>
    public static bool AlignMultipliers(ReadOnlySpan<int> mult, ReadOnlySpan<int> rshift, ReadOnlySpan<long> accBound,
        Span<long> aligned, out int n)
    {
        n = 1;
        foreach (int s in rshift) n = Math.Max(n, s);
        for (int c = 0; c < mult.Length; c++)
        {
            int extra = n - rshift[c];
            if (mult[c] == 0) { aligned[c] = 0; continue; }
            long m = (long)mult[c] << Math.Min(extra, 31);
            if (extra > 31 || (mult[c] != 0 && (double)accBound[c] * m >= 4.0e18)) return false; // 4e18 < 2^62
            aligned[c] = m;
        }
        return true;
    }
}
