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
    /// <summary>Number of zero values (a GEMM row's pairs of deviations that contribute nothing).</summary>
    public static int CountZeros(ReadOnlySpan<int> x)
    {
        int i = 0, n = 0;
        ref int r = ref MemoryMarshal.GetReference(x);
        if (InstructionSets.Vector512)
            for (; i + 16 <= x.Length; i += 16)
                n += BitOperations.PopCount(Vector512.Equals(Vector512.LoadUnsafe(ref r, (nuint)i), Vector512<int>.Zero).ExtractMostSignificantBits());
        if (InstructionSets.Vector256)
            for (; i + 8 <= x.Length; i += 8)
                n += BitOperations.PopCount(Vector256.Equals(Vector256.LoadUnsafe(ref r, (nuint)i), Vector256<int>.Zero).ExtractMostSignificantBits());
        if (InstructionSets.Vector128)
            for (; i + 4 <= x.Length; i += 4)
                n += BitOperations.PopCount(Vector128.Equals(Vector128.LoadUnsafe(ref r, (nuint)i), Vector128<int>.Zero).ExtractMostSignificantBits());
        for (; i < x.Length; i++) n += x[i] == 0 ? 1 : 0;
        return n;
    }

    /// <summary>Number of values different from the zero point: the events a layer receives.</summary>
    public static long CountEvents(ReadOnlySpan<sbyte> x, sbyte zeroPoint)
    {
        int i = 0;
        long n = 0;
        ref sbyte r = ref MemoryMarshal.GetReference(x);
        if (InstructionSets.Vector512 && x.Length >= 64)
        {
            var z = Vector512.Create(zeroPoint);
            for (; i + 64 <= x.Length; i += 64)
                n += 64 - BitOperations.PopCount(Vector512.Equals(Vector512.LoadUnsafe(ref r, (nuint)i), z).ExtractMostSignificantBits());
        }
        if (InstructionSets.Vector256)
        {
            var z = Vector256.Create(zeroPoint);
            for (; i + 32 <= x.Length; i += 32)
                n += 32 - BitOperations.PopCount(Vector256.Equals(Vector256.LoadUnsafe(ref r, (nuint)i), z).ExtractMostSignificantBits());
        }
        if (InstructionSets.Vector128)
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
        if (InstructionSets.Avx512DQ && acc.Length >= 16)
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
        else if (InstructionSets.Vector128 && acc.Length >= 8)
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

    /// <summary>
    /// AVX2 (no AVX-512): dst[i] = clamp(zp + RoundHalfAwayFromZero(acc[i]·mult[i] / 2^shift[i]), lo, hi) with
    /// the per-channel Q31 multipliers as they are (no alignment, so never the scalar fallback). The products
    /// are exact 32×32→64 (vpmuldq on even and odd lanes); the arithmetic right shift by a per-lane count is
    /// the logical one (vpsrlvq) between two XORs with the sign. <paramref name="half"/>[i] = 2^(shift[i] − 1).
    /// Returns how many leading elements were done (a multiple of 8).
    /// </summary>
    internal static int RequantizePerChannelAvx2(ReadOnlySpan<int> acc, ReadOnlySpan<int> mult, ReadOnlySpan<long> shift,
        ReadOnlySpan<long> half, Span<sbyte> dst, int zp, int lo, int hi)
    {
        if (!InstructionSets.Avx2) return 0;
        int len = acc.Length;
        if (mult.Length < len || shift.Length < len || half.Length < len || dst.Length < len) throw new ArgumentException("spans too short");
        ref int ra = ref MemoryMarshal.GetReference(acc);
        ref int rm = ref MemoryMarshal.GetReference(mult);
        ref long rs = ref MemoryMarshal.GetReference(shift);
        ref long rh = ref MemoryMarshal.GetReference(half);
        ref sbyte rd = ref MemoryMarshal.GetReference(dst);
        var vz = Vector256.Create((long)zp);
        var vlo = Vector256.Create((long)lo);
        var vhi = Vector256.Create((long)hi);
        var lowMask = Vector256.Create(0xFFFFFFFFL);
        int i = 0;
        for (; i + 8 <= len; i += 8)
        {
            var a = Vector256.LoadUnsafe(ref ra, (nuint)i);
            var m = Vector256.LoadUnsafe(ref rm, (nuint)i);
            // Lanes 0,2,4,6 and 1,3,5,7 as four int64 each; the shift/half tables are in element order.
            var s = Vector256.LoadUnsafe(ref rs, (nuint)i);
            var s2 = Vector256.LoadUnsafe(ref rs, (nuint)(i + 4));
            var h = Vector256.LoadUnsafe(ref rh, (nuint)i);
            var h2 = Vector256.LoadUnsafe(ref rh, (nuint)(i + 4));
            // Element order (0..3 in s, 4..7 in s2) → even/odd order.
            var sEven = Avx2.Permute4x64(Avx2.UnpackLow(s, s2), 0b11_01_10_00);   // 0,4,2,6 → reorder
            var sOdd = Avx2.Permute4x64(Avx2.UnpackHigh(s, s2), 0b11_01_10_00);
            var hEven = Avx2.Permute4x64(Avx2.UnpackLow(h, h2), 0b11_01_10_00);
            var hOdd = Avx2.Permute4x64(Avx2.UnpackHigh(h, h2), 0b11_01_10_00);
            var pe = Avx2.Multiply(a, m);
            var po = Avx2.Multiply(Avx2.ShiftRightLogical(a.AsInt64(), 32).AsInt32(), Avx2.ShiftRightLogical(m.AsInt64(), 32).AsInt32());
            var re = RoundClamp(pe, hEven, sEven, vz, vlo, vhi);
            var ro = RoundClamp(po, hOdd, sOdd, vz, vlo, vhi);
            var q = ((re & lowMask) | Avx2.ShiftLeftLogical(ro, 32)).AsInt32();      // 8 × int32 in element order
            var b16 = Vector256.Narrow(q, q);
            var b8 = Vector256.Narrow(b16, b16);
            Unsafe.WriteUnaligned(ref Unsafe.As<sbyte, byte>(ref Unsafe.Add(ref rd, i)), b8.AsInt64().ToScalar());
        }
        return i;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<long> RoundClamp(Vector256<long> p, Vector256<long> half, Vector256<long> n,
        Vector256<long> zp, Vector256<long> lo, Vector256<long> hi)
    {
        var r = p + half + Avx2.CompareGreaterThan(Vector256<long>.Zero, p);        // + (p >> 63)
        var sign = Avx2.CompareGreaterThan(Vector256<long>.Zero, r);
        var v = zp + (Avx2.ShiftRightLogicalVariable((r ^ sign).AsUInt64(), n.AsUInt64()).AsInt64() ^ sign);
        v = Avx2.BlendVariable(v, lo, Avx2.CompareGreaterThan(lo, v));
        return Avx2.BlendVariable(v, hi, Avx2.CompareGreaterThan(v, hi));
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
