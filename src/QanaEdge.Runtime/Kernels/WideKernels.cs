using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace QanaEdge.Runtime.Kernels;

/// <summary>
/// AVX-512 element-wise kernels (64 bytes per step) used when the CPU has them; the callers fall back to
/// the portable table walks otherwise. Each computes exactly the reference formula.
/// </summary>
internal static class WideKernels
{
    public static bool LutSupported => InstructionSets.Avx512Vbmi;
    public static bool ArithmeticSupported => InstructionSets.Avx512BW && InstructionSets.Avx512DQ;

    /// <summary>
    /// y[i] = table[x[i] + 128] with vpermi2b: the low 7 bits of x pick one of 128 bytes from the lower or
    /// upper half of the table, and the sign of x (x &lt; 0 ⇔ index &lt; 128) selects the half.
    /// Returns how many leading elements were done (a multiple of 64); the caller finishes the tail.
    /// </summary>
    public static int Lut(ReadOnlySpan<sbyte> x, ReadOnlySpan<sbyte> table, Span<sbyte> y)
    {
        ref sbyte rt = ref MemoryMarshal.GetReference(table);
        var t0 = Vector512.LoadUnsafe(ref rt);
        var t1 = Vector512.LoadUnsafe(ref rt, 64);
        var t2 = Vector512.LoadUnsafe(ref rt, 128);
        var t3 = Vector512.LoadUnsafe(ref rt, 192);
        ref sbyte rx = ref MemoryMarshal.GetReference(x);
        ref sbyte ry = ref MemoryMarshal.GetReference(y);
        int i = 0, n = y.Length;
        for (; i + 64 <= n; i += 64)
        {
            var v = Vector512.LoadUnsafe(ref rx, (nuint)i);
            var neg = Avx512Vbmi.PermuteVar64x8x2(t0, v, t1);     // entries 0..127: q in [−128, −1]
            var pos = Avx512Vbmi.PermuteVar64x8x2(t2, v, t3);     // entries 128..255: q in [0, 127]
            Vector512.ConditionalSelect(Vector512.LessThan(v, Vector512<sbyte>.Zero), neg, pos).StoreUnsafe(ref ry, (nuint)i);
        }
        return i;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<long> Round(Vector512<long> p, Vector512<long> half, int n)
        => Vector512.ShiftRightArithmetic(p + half + Vector512.ShiftRightArithmetic(p, 63), n);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Load16(ref sbyte r, int i) => Avx512F.ConvertToVector512Int32(Vector128.LoadUnsafe(ref r, (nuint)i));

    /// <summary>Requantize 16 int32 accumulators with one multiplier into 16 int8 values.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<sbyte> Requant16(Vector512<int> acc, Vector512<long> m, Vector512<long> half, int n,
        Vector512<long> zp, Vector512<long> lo, Vector512<long> hi)
    {
        var r0 = Vector512.Min(Vector512.Max(zp + Round(Vector512.WidenLower(acc) * m, half, n), lo), hi);
        var r1 = Vector512.Min(Vector512.Max(zp + Round(Vector512.WidenUpper(acc) * m, half, n), lo), hi);
        return Avx512F.ConvertToVector128SByte(Vector512.Narrow(r0, r1));
    }

    /// <summary>
    /// Fixed-point add, 16 elements per step. (q − z)·2^20·M / 2^n equals (q − z)·M / 2^(n − 20) exactly, so the
    /// aligned inputs are R((q − z)·M_a, n_a − 20) and R((q − z)·M_b, n_b − 20) with products below 2^40.
    /// </summary>
    public static int Add(ReadOnlySpan<sbyte> a, ReadOnlySpan<sbyte> b, Span<sbyte> y,
        int za, QuantizedMultiplier ma, int zb, QuantizedMultiplier mb, int zo, QuantizedMultiplier mo, int lo, int hi, int leftShift)
    {
        int na = ma.RightShift - leftShift, nb = mb.RightShift - leftShift, no = mo.RightShift;
        if (na < 1 || nb < 1) return 0;     // the exact rewrite needs n ≥ 1; the table walk handles the rest
        var vza = Vector512.Create(za); var vzb = Vector512.Create(zb);
        var vma = Vector512.Create((long)ma.Multiplier); var vmb = Vector512.Create((long)mb.Multiplier); var vmo = Vector512.Create((long)mo.Multiplier);
        var ha = Vector512.Create(1L << (na - 1)); var hb = Vector512.Create(1L << (nb - 1)); var ho = Vector512.Create(1L << (no - 1));
        var vzo = Vector512.Create((long)zo); var vlo = Vector512.Create((long)lo); var vhi = Vector512.Create((long)hi);
        ref sbyte ra = ref MemoryMarshal.GetReference(a);
        ref sbyte rb = ref MemoryMarshal.GetReference(b);
        ref sbyte ry = ref MemoryMarshal.GetReference(y);
        int i = 0, len = y.Length;
        for (; i + 16 <= len; i += 16)
        {
            var da = Load16(ref ra, i) - vza;
            var db = Load16(ref rb, i) - vzb;
            var s0 = Round(Vector512.WidenLower(da) * vma, ha, na) + Round(Vector512.WidenLower(db) * vmb, hb, nb);
            var s1 = Round(Vector512.WidenUpper(da) * vma, ha, na) + Round(Vector512.WidenUpper(db) * vmb, hb, nb);
            var r0 = Vector512.Min(Vector512.Max(vzo + Round(s0 * vmo, ho, no), vlo), vhi);
            var r1 = Vector512.Min(Vector512.Max(vzo + Round(s1 * vmo, ho, no), vlo), vhi);
            Avx512F.ConvertToVector128SByte(Vector512.Narrow(r0, r1)).StoreUnsafe(ref ry, (nuint)i);
        }
        return i;
    }

    /// <summary>Element-wise gate (same shape), 16 elements per step: (x − z_x)·(g − z_g) fits int32, one requantization.</summary>
    public static int MulFull(ReadOnlySpan<sbyte> x, ReadOnlySpan<sbyte> g, Span<sbyte> y, int zx, int zg, QuantizedMultiplier m, int zo, int lo, int hi)
    {
        int n = m.RightShift;
        var vzx = Vector512.Create(zx); var vzg = Vector512.Create(zg);
        var vm = Vector512.Create((long)m.Multiplier); var half = Vector512.Create(1L << (n - 1));
        var vzo = Vector512.Create((long)zo); var vlo = Vector512.Create((long)lo); var vhi = Vector512.Create((long)hi);
        ref sbyte rx = ref MemoryMarshal.GetReference(x);
        ref sbyte rg = ref MemoryMarshal.GetReference(g);
        ref sbyte ry = ref MemoryMarshal.GetReference(y);
        int i = 0, len = y.Length;
        for (; i + 16 <= len; i += 16)
        {
            var acc = (Load16(ref rx, i) - vzx) * (Load16(ref rg, i) - vzg);
            Requant16(acc, vm, half, n, vzo, vlo, vhi).StoreUnsafe(ref ry, (nuint)i);
        }
        return i;
    }

    // ---------------------------------------------------------------- AVX2 (x86-64-v3 without AVX-512)

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Load8(ref sbyte r, int i) =>
        Avx2.ConvertToVector256Int32(Vector128.CreateScalar(Unsafe.ReadUnaligned<long>(ref Unsafe.As<sbyte, byte>(ref Unsafe.Add(ref r, i)))).AsSByte());

    /// <summary>RoundHalfAwayFromZero(p / 2^n) on int64 lanes: the arithmetic shift (no vpsraq in AVX2) is the logical one between XORs with the sign.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<long> Round(Vector256<long> p, Vector256<long> half, int n)
    {
        var r = p + half + Avx2.CompareGreaterThan(Vector256<long>.Zero, p);
        var sign = Avx2.CompareGreaterThan(Vector256<long>.Zero, r);
        return Vector256.ShiftRightLogical((r ^ sign).AsUInt64(), n).AsInt64() ^ sign;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<long> Clamp(Vector256<long> v, Vector256<long> lo, Vector256<long> hi)
    {
        v = Avx2.BlendVariable(v, lo, Avx2.CompareGreaterThan(lo, v));
        return Avx2.BlendVariable(v, hi, Avx2.CompareGreaterThan(v, hi));
    }

    /// <summary>Even lanes (elements 0, 2, 4, 6) and odd lanes (1, 3, 5, 7) of int8 results back to 8 bytes in order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static long Pack8(Vector256<long> even, Vector256<long> odd)
    {
        var q = ((even & Vector256.Create(0xFFFFFFFFL)) | Avx2.ShiftLeftLogical(odd, 32)).AsInt32();
        var b16 = Vector256.Narrow(q, q);
        return Vector256.Narrow(b16, b16).AsInt64().ToScalar();
    }

    /// <summary><see cref="Add"/> with AVX2, 8 elements per step; the products are exact 32×32→64 (vpmuldq).</summary>
    public static int Add256(ReadOnlySpan<sbyte> a, ReadOnlySpan<sbyte> b, Span<sbyte> y,
        int za, QuantizedMultiplier ma, int zb, QuantizedMultiplier mb, int zo, QuantizedMultiplier mo, int lo, int hi, int leftShift)
    {
        int na = ma.RightShift - leftShift, nb = mb.RightShift - leftShift, no = mo.RightShift;
        if (na < 1 || nb < 1 || !InstructionSets.Avx2) return 0;
        if (a.Length < y.Length || b.Length < y.Length) throw new ArgumentException("operand shorter than output");
        var vza = Vector256.Create(za); var vzb = Vector256.Create(zb);
        var vma = Vector256.Create(ma.Multiplier); var vmb = Vector256.Create(mb.Multiplier); var vmo = Vector256.Create(mo.Multiplier);
        var ha = Vector256.Create(1L << (na - 1)); var hb = Vector256.Create(1L << (nb - 1)); var ho = Vector256.Create(1L << (no - 1));
        var vzo = Vector256.Create((long)zo); var vlo = Vector256.Create((long)lo); var vhi = Vector256.Create((long)hi);
        ref sbyte ra = ref MemoryMarshal.GetReference(a);
        ref sbyte rb = ref MemoryMarshal.GetReference(b);
        ref sbyte ry = ref MemoryMarshal.GetReference(y);
        int i = 0, len = y.Length;
        for (; i + 8 <= len; i += 8)
        {
            var da = Load8(ref ra, i) - vza;
            var db = Load8(ref rb, i) - vzb;
            var daOdd = Avx2.ShiftRightLogical(da.AsInt64(), 32).AsInt32();
            var dbOdd = Avx2.ShiftRightLogical(db.AsInt64(), 32).AsInt32();
            var se = Round(Avx2.Multiply(da, vma), ha, na) + Round(Avx2.Multiply(db, vmb), hb, nb);     // |a' + b'| < 2^28
            var so = Round(Avx2.Multiply(daOdd, vma), ha, na) + Round(Avx2.Multiply(dbOdd, vmb), hb, nb);
            var re = Clamp(vzo + Round(Avx2.Multiply(se.AsInt32(), vmo), ho, no), vlo, vhi);
            var ro = Clamp(vzo + Round(Avx2.Multiply(so.AsInt32(), vmo), ho, no), vlo, vhi);
            Unsafe.WriteUnaligned(ref Unsafe.As<sbyte, byte>(ref Unsafe.Add(ref ry, i)), Pack8(re, ro));
        }
        return i;
    }

    /// <summary><see cref="MulFull"/> with AVX2, 8 elements per step.</summary>
    public static int MulFull256(ReadOnlySpan<sbyte> x, ReadOnlySpan<sbyte> g, Span<sbyte> y, int zx, int zg, QuantizedMultiplier m, int zo, int lo, int hi)
    {
        if (!InstructionSets.Avx2) return 0;
        if (x.Length < y.Length || g.Length < y.Length) throw new ArgumentException("operand shorter than output");
        int n = m.RightShift;
        var vzx = Vector256.Create(zx); var vzg = Vector256.Create(zg);
        var vm = Vector256.Create(m.Multiplier); var half = Vector256.Create(1L << (n - 1));
        var vzo = Vector256.Create((long)zo); var vlo = Vector256.Create((long)lo); var vhi = Vector256.Create((long)hi);
        ref sbyte rx = ref MemoryMarshal.GetReference(x);
        ref sbyte rg = ref MemoryMarshal.GetReference(g);
        ref sbyte ry = ref MemoryMarshal.GetReference(y);
        int i = 0, len = y.Length;
        for (; i + 8 <= len; i += 8)
        {
            var acc = (Load8(ref rx, i) - vzx) * (Load8(ref rg, i) - vzg);           // |acc| ≤ 255²
            var accOdd = Avx2.ShiftRightLogical(acc.AsInt64(), 32).AsInt32();
            var re = Clamp(vzo + Round(Avx2.Multiply(acc, vm), half, n), vlo, vhi);
            var ro = Clamp(vzo + Round(Avx2.Multiply(accOdd, vm), half, n), vlo, vhi);
            Unsafe.WriteUnaligned(ref Unsafe.As<sbyte, byte>(ref Unsafe.Add(ref ry, i)), Pack8(re, ro));
        }
        return i;
    }
}
