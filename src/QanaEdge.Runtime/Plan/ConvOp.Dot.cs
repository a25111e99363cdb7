using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;
using QanaEdge.Runtime.Kernels;

namespace QanaEdge.Runtime.Plan;

/// <summary>
/// The GEMM family on 4-way int8 dot products, for CPUs that have them: AVX-VNNI's vpdpbusd on x64
/// (<see cref="AvxVnni"/>, u8 × s8, 32 MACs per 256-bit instruction with the add fused) and ARMv8.2's sdot on ARM64
/// (<see cref="Dp"/>, s8 × s8, 16 MACs per instruction), in place of the int16 pairs of vpmaddwd.
/// <para>
/// The input row stays 8-bit, so the zero point can no longer be subtracted before the multiply. It moves into the
/// bias instead, as in gemmlowp: Σ w·(x − z) = Σ w·(x + o) − (z + o)·Σw, with o = 128 on x64 (vpdpbusd wants its
/// input unsigned, and x + 128 is x with the sign bit flipped) and o = 0 on ARM64. Padding taps hold z + o, so the
/// fold cancels them exactly like the zero deviations of the pair kernels. Accumulation is in int32 with wrap-around,
/// so the partial sums may leave int32 on the way and the result is still exact whenever the reference's
/// accumulator fits, which <see cref="AccumulatorBound"/> guarantees: bit-exact to the reference.
/// </para>
/// <para>
/// These kernels multiply every quad; they are not event-driven. With the zero point folded into the bias, a quad
/// at the zero point still contributes (z + o)·Σw to the sum, so skipping it would need a correction as costly as
/// the multiply (only z + o = 0 escapes that). Nor would it pay: four inputs at the zero point at once are rare,
/// and in a scan of skipping rules on the shipped model (run before the correction was seen to be needed, so
/// timing only) none was faster than dense rows with vpdpbusd.
/// </para>
/// </summary>
internal sealed partial class ConvOp
{
    /// <summary>Which dot-product instruction this machine offers the GEMMs, if any (<see cref="InstructionSets"/>).</summary>
    private static readonly bool X86Dot = InstructionSets.AvxVnni;
    private static readonly bool ArmDot = InstructionSets.ArmDot;

    private bool _dot;                   // this op runs the quad kernels
    private int _k4;                     // K rounded up to a quad
    private byte _zo;                    // z + o: the byte an input at its zero point becomes
    private sbyte[] _b8 = [];            // [K4/4][Np][4]
    private int[] _biasDot = [];         // [Np]: bias − (z + o)·Σw

    /// <summary>Packs a GEMM's weights [K4/4][Np][4] and folds the zero point into the bias; false when this machine has
    /// no dot product or the zero point is not an input byte.</summary>
    private bool PrepareDot()
    {
        if (!(X86Dot || ArmDot)) return false;
        // The zero point must be an input byte: unsigned after the flip on x64, signed on ARM64.
        int zo = X86Dot ? ZpIn + 128 : ZpIn;
        if (X86Dot ? zo is < 0 or > 255 : zo is < sbyte.MinValue or > sbyte.MaxValue) return false;
        _zo = (byte)zo;
        _k4 = (_k + 3) & ~3;
        int quads = _k4 / 4;
        _b8 = new sbyte[quads * _np * 4];
        _biasDot = new int[_np];
        for (int n = 0; n < Cout; n++)
        {
            long sum = 0;
            for (int k = 0; k < _k; k++)
            {
                sbyte w = W[n * _k + k];
                _b8[((k >> 2) * _np + n) * 4 + (k & 3)] = w;
                sum += w;
            }
            // Wrap-around arithmetic: the folded bias may leave int32 like any partial sum; only the final sum must fit.
            _biasDot[n] = unchecked((int)(Bias[n] - (long)zo * sum));
        }
        return true;
    }

    /// <summary>One position with the quad kernels: the 8-bit input row, then the dot products.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void QuadRow(ReadOnlySpan<sbyte> x, int src, int p, Span<int> dst)
    {
        var row = MemoryMarshal.AsBytes(Buffers.Shorts.AsSpan()).Slice(0, _k4 + 64);
        if (src >= 0) InputBytes(x.Slice(src, _k), row);
        else Im2ColBytes(x, p / Wout, p % Wout, row);
        row[_k.._k4].Fill(_zo);   // meets zero weights; filled so that the row is the same on every run
        var quads = MemoryMarshal.Cast<byte, int>(row[.._k4]);
        if (X86Dot) AccumulateVnni(quads, dst);
        else AccumulateSdot(quads, dst);
    }

    /// <summary>dst[i] = x[i] + o as a byte: the sign bit flipped on x64, the same bits on ARM64.</summary>
    private static void InputBytes(ReadOnlySpan<sbyte> x, Span<byte> dst)
    {
        var src = MemoryMarshal.AsBytes(x);
        if (!X86Dot)
        {
            src.CopyTo(dst);
            return;
        }
        int i = 0;
        ref byte rs = ref MemoryMarshal.GetReference(src);
        ref byte rd = ref MemoryMarshal.GetReference(dst);
        for (var flip = Vector256.Create((byte)0x80); i + 32 <= src.Length; i += 32)
            (Vector256.LoadUnsafe(ref rs, (nuint)i) ^ flip).StoreUnsafe(ref rd, (nuint)i);
        // Channel counts of 16 and 48 and the 9-byte rows of the stem end here, not in the byte loop.
        for (var flip = Vector128.Create((byte)0x80); i + 16 <= src.Length; i += 16)
            (Vector128.LoadUnsafe(ref rs, (nuint)i) ^ flip).StoreUnsafe(ref rd, (nuint)i);
        if (i + 8 <= src.Length)
        {
            Unsafe.WriteUnaligned(ref Unsafe.Add(ref rd, i), Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref rs, i)) ^ 0x8080808080808080UL);
            i += 8;
        }
        for (; i < src.Length; i++) Unsafe.Add(ref rd, i) = (byte)(Unsafe.Add(ref rs, i) ^ 0x80);
    }

    private void Im2ColBytes(ReadOnlySpan<sbyte> x, int oy, int ox, Span<byte> dst)
    {
        int o = 0;
        int ix0 = ox * Sw - PadLeft;
        bool inside = ix0 >= 0 && ix0 + Kw <= Win;
        for (int ky = 0; ky < Kh; ky++)
        {
            int iy = oy * Sh - PadTop + ky;
            if (inside && (uint)iy < (uint)Hin)
            {
                // The window's taps of one image row are contiguous in HWC: one span of Kw·Cin bytes.
                InputBytes(x.Slice((iy * Win + ix0) * Cin, Kw * Cin), dst.Slice(o, Kw * Cin));
                o += Kw * Cin;
                continue;
            }
            for (int kx = 0; kx < Kw; kx++, o += Cin)
            {
                int ix = ix0 + kx;
                if ((uint)iy >= (uint)Hin || (uint)ix >= (uint)Win) dst.Slice(o, Cin).Fill(_zo);
                else InputBytes(x.Slice((iy * Win + ix) * Cin, Cin), dst.Slice(o, Cin));
            }
        }
    }

    /// <summary>AVX-VNNI: vpdpbusd on 256-bit vectors, 32 MACs per instruction with the add fused, 48, 32 or 16
    /// channels per pass over the row.</summary>
    private void AccumulateVnni(ReadOnlySpan<int> quads, Span<int> dst)
    {
        ref sbyte b = ref MemoryMarshal.GetArrayDataReference(_b8);
        ref int rb = ref MemoryMarshal.GetArrayDataReference(_biasDot);
        ref int rd = ref MemoryMarshal.GetReference(dst);
        ref int rq = ref MemoryMarshal.GetReference(quads);
        int np = _np, n = quads.Length, g = 0;
        int rowStride = np * 4;   // bytes per quad row
        // 48 channels per pass (six accumulators, the broadcast and the loop shared by more of them), then 32, then 16.
        for (; g + 3 * Group <= np; g += 3 * Group)
        {
            var a0 = Vector256.LoadUnsafe(ref rb, (nuint)g);
            var a1 = Vector256.LoadUnsafe(ref rb, (nuint)(g + 8));
            var a2 = Vector256.LoadUnsafe(ref rb, (nuint)(g + 16));
            var a3 = Vector256.LoadUnsafe(ref rb, (nuint)(g + 24));
            var a4 = Vector256.LoadUnsafe(ref rb, (nuint)(g + 32));
            var a5 = Vector256.LoadUnsafe(ref rb, (nuint)(g + 40));
            for (int k = 0; k < n; k++)
            {
                var xv = Vector256.Create(Unsafe.Add(ref rq, k)).AsByte();
                ref sbyte w = ref Unsafe.Add(ref b, k * rowStride + g * 4);
                a0 = AvxVnni.MultiplyWideningAndAdd(a0, xv, Vector256.LoadUnsafe(ref w));
                a1 = AvxVnni.MultiplyWideningAndAdd(a1, xv, Vector256.LoadUnsafe(ref w, 32));
                a2 = AvxVnni.MultiplyWideningAndAdd(a2, xv, Vector256.LoadUnsafe(ref w, 64));
                a3 = AvxVnni.MultiplyWideningAndAdd(a3, xv, Vector256.LoadUnsafe(ref w, 96));
                a4 = AvxVnni.MultiplyWideningAndAdd(a4, xv, Vector256.LoadUnsafe(ref w, 128));
                a5 = AvxVnni.MultiplyWideningAndAdd(a5, xv, Vector256.LoadUnsafe(ref w, 160));
            }
            a0.StoreUnsafe(ref rd, (nuint)g);
            a1.StoreUnsafe(ref rd, (nuint)(g + 8));
            a2.StoreUnsafe(ref rd, (nuint)(g + 16));
            a3.StoreUnsafe(ref rd, (nuint)(g + 24));
            a4.StoreUnsafe(ref rd, (nuint)(g + 32));
            a5.StoreUnsafe(ref rd, (nuint)(g + 40));
        }
        for (; g + 2 * Group <= np; g += 2 * Group)
        {
            var a0 = Vector256.LoadUnsafe(ref rb, (nuint)g);
            var a1 = Vector256.LoadUnsafe(ref rb, (nuint)(g + 8));
            var a2 = Vector256.LoadUnsafe(ref rb, (nuint)(g + 16));
            var a3 = Vector256.LoadUnsafe(ref rb, (nuint)(g + 24));
            for (int k = 0; k < n; k++)
            {
                var xv = Vector256.Create(Unsafe.Add(ref rq, k)).AsByte();
                ref sbyte w = ref Unsafe.Add(ref b, k * rowStride + g * 4);
                a0 = AvxVnni.MultiplyWideningAndAdd(a0, xv, Vector256.LoadUnsafe(ref w));
                a1 = AvxVnni.MultiplyWideningAndAdd(a1, xv, Vector256.LoadUnsafe(ref w, 32));
                a2 = AvxVnni.MultiplyWideningAndAdd(a2, xv, Vector256.LoadUnsafe(ref w, 64));
                a3 = AvxVnni.MultiplyWideningAndAdd(a3, xv, Vector256.LoadUnsafe(ref w, 96));
            }
            a0.StoreUnsafe(ref rd, (nuint)g);
            a1.StoreUnsafe(ref rd, (nuint)(g + 8));
            a2.StoreUnsafe(ref rd, (nuint)(g + 16));
            a3.StoreUnsafe(ref rd, (nuint)(g + 24));
        }
        for (; g < np; g += Group)
        {
            var a0 = Vector256.LoadUnsafe(ref rb, (nuint)g);
            var a1 = Vector256.LoadUnsafe(ref rb, (nuint)(g + 8));
            for (int k = 0; k < n; k++)
            {
                var xv = Vector256.Create(Unsafe.Add(ref rq, k)).AsByte();
                ref sbyte w = ref Unsafe.Add(ref b, k * rowStride + g * 4);
                a0 = AvxVnni.MultiplyWideningAndAdd(a0, xv, Vector256.LoadUnsafe(ref w));
                a1 = AvxVnni.MultiplyWideningAndAdd(a1, xv, Vector256.LoadUnsafe(ref w, 32));
            }
            a0.StoreUnsafe(ref rd, (nuint)g);
            a1.StoreUnsafe(ref rd, (nuint)(g + 8));
        }
    }

    /// <summary>ARMv8.2 sdot on 128-bit vectors, 16 MACs per instruction, 16 channels per step.</summary>
    private void AccumulateSdot(ReadOnlySpan<int> quads, Span<int> dst)
    {
        ref sbyte b = ref MemoryMarshal.GetArrayDataReference(_b8);
        ref int rb = ref MemoryMarshal.GetArrayDataReference(_biasDot);
        ref int rd = ref MemoryMarshal.GetReference(dst);
        ref int rq = ref MemoryMarshal.GetReference(quads);
        int np = _np, n = quads.Length;
        int rowStride = np * 4;
        for (int g = 0; g < np; g += Group)
        {
            var a0 = Vector128.LoadUnsafe(ref rb, (nuint)g);
            var a1 = Vector128.LoadUnsafe(ref rb, (nuint)(g + 4));
            var a2 = Vector128.LoadUnsafe(ref rb, (nuint)(g + 8));
            var a3 = Vector128.LoadUnsafe(ref rb, (nuint)(g + 12));
            for (int k = 0; k < n; k++)
            {
                var xv = Vector128.Create(Unsafe.Add(ref rq, k)).AsSByte();
                ref sbyte w = ref Unsafe.Add(ref b, k * rowStride + g * 4);
                a0 = Dp.DotProduct(a0, xv, Vector128.LoadUnsafe(ref w));
                a1 = Dp.DotProduct(a1, xv, Vector128.LoadUnsafe(ref w, 16));
                a2 = Dp.DotProduct(a2, xv, Vector128.LoadUnsafe(ref w, 32));
                a3 = Dp.DotProduct(a3, xv, Vector128.LoadUnsafe(ref w, 48));
            }
            a0.StoreUnsafe(ref rd, (nuint)g);
            a1.StoreUnsafe(ref rd, (nuint)(g + 4));
            a2.StoreUnsafe(ref rd, (nuint)(g + 8));
            a3.StoreUnsafe(ref rd, (nuint)(g + 12));
        }
    }
}
