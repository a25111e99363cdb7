using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using QanaEdge.Model.Graph;
using QanaEdge.Runtime.Kernels;

namespace QanaEdge.Runtime.Plan;

/// <summary>
/// Optimized weighted kernels, bit-exact to the reference loop nests:
/// <list type="bullet">
/// <item>GEMM (pointwise, Dense, strided 1×1 and general Conv2D through an im2col row): the input row becomes
/// int16 deviations x − z (so padding and the zero-point correction vanish), read as int32 pairs. Pairs that are
/// zero (both inputs at the zero point) are events that did not happen and are skipped, except in rows too dense
/// for the compaction to pay at 256 and 512 bits (_denseZeroLimit); each remaining pair is
/// broadcast and multiplied against weights packed [K/2][N][2] with vpmaddwd (Avx512BW.MultiplyAddAdjacent,
/// 32 exact int16 MACs per instruction, no saturation since |x − z|·|w| ≤ 255·128). The portable path (ARM64
/// AdvSimd, other CPUs) multiplies int32 lanes against weights packed [K][N]. Where the CPU has a 4-way int8 dot
/// product (AVX-VNNI, ARM64 sdot) the rows go to the quad kernels of ConvOp.Dot.cs instead.</item>
/// <item>Depthwise: vector over 16-channel groups, taps outside the image read the zero point so the folded bias
/// bias − z·Σw stays exact everywhere.</item>
/// </list>
/// Accumulators of a chunk of positions land in scratch and are requantized together with per-channel
/// multipliers aligned to one shift (<see cref="VectorOps.AlignMultipliers"/>), or by the scalar rule when
/// alignment could overflow 64 bits.
/// </summary>
internal sealed partial class ConvOp
{
    private const int Group = 16;        // output channels per 512-bit accumulator
    private const int Chunk = 16;        // positions requantized together

    private int _k, _kp, _np, _shift;
    private short[] _b16 = [];           // [Kp/2][Np][2]
    private int[] _b32 = [];             // [K][Np]
    private int[] _biasP = [];           // [Np] (depthwise: bias − z·Σw)
    private long[] _multTiled = [];      // [Chunk][Cout]
    private int[] _w16 = [];             // depthwise [taps][Np]: (ushort)w in the low half, 0 above (vpmaddwd as an exact 16×16 multiply)
    private bool _vectorRequant;
    private int[] _multChunk = [];       // AVX2 requantization: per-channel M_c, 2^(n_c − 1) and n_c, tiled [Chunk][Cout]
    private long[] _halfChunk = [], _shiftChunk = [];
    private static readonly bool Wide = InstructionSets.Avx512BW;
    private int[] _allPairs = [];        // 0 … Kp/2 − 1: the event list of a dense row
    private int _denseZeroLimit;         // a row with at most this many zero pairs skips the event append

    public override bool HasOptimized => true;

    public override (int Shorts, int Ints) Scratch
    {
        get
        {
            int k = Kind == OpKind.DepthwiseConv2D ? 0 : Kind == OpKind.Conv2D ? Kh * Kw * Cin : Cin;
            int kp = 4 * (k + 128);
            int np = (Cout + Group - 1) / Group * Group;
            int row = Kind == OpKind.DepthwiseConv2D ? Wout * Cout : 0;
            return (kp, kp / 2 + Math.Max(Chunk * Cout, row) + np + 64);
        }
    }

    public override int ScratchBytes => Kind == OpKind.DepthwiseConv2D ? Win * Cin + 64 : 0;

    /// <summary>Packs weights and aligns multipliers: the prepare half of the optimized kernels.</summary>
    public void PrepareOptimized()
    {
        _np = (Cout + Group - 1) / Group * Group;
        var bound = new long[Cout];
        if (Kind == OpKind.DepthwiseConv2D)
        {
            int taps = Kh * Kw;
            _b32 = new int[taps * _np];
            _w16 = new int[taps * _np];
            _biasP = new int[_np];
            for (int c = 0; c < Cout; c++)
            {
                long sum = 0;
                for (int t = 0; t < taps; t++)
                {
                    int w = W[t * Cout + c];
                    _b32[t * _np + c] = w;
                    sum += w;
                    _w16[t * _np + c] = (ushort)(short)w;
                    bound[c] += Math.Abs(w) * 255L;
                }
                // Σ w·(x − z) = Σ w·x − z·Σw; with padding read as z the correction is the same at every position.
                long folded = Bias[c] - ZpIn * sum;
                if (folded is < int.MinValue or > int.MaxValue) throw new InvalidGraphException($"node '{Node.Name}': folded bias overflows");
                _biasP[c] = (int)folded;
                bound[c] += Math.Abs((long)Bias[c]);
            }
        }
        else
        {
            _k = Kind == OpKind.Conv2D ? Kh * Kw * Cin : Cin;
            _kp = (_k + 1) & ~1;
            for (int n = 0; n < Cout; n++) bound[n] = AccumulatorBound(W.AsSpan(n * _k, _k), Bias[n]);
            // The quad kernels pack their own copy of the weights (ConvOp.Dot.cs); the pairs' is needed only without them.
            _dot = PrepareDot();
            if (!_dot) PreparePairs();
        }
        var aligned = new long[Cout];
        _vectorRequant = VectorOps.AlignMultipliers(Mult, RShift, bound, aligned, out _shift);
        _multTiled = new long[Chunk * Cout];
        for (int p = 0; p < Chunk; p++) aligned.CopyTo(_multTiled, p * Cout);
        if (!Wide && InstructionSets.Avx2)
        {
            _multChunk = new int[Chunk * Cout];
            _halfChunk = new long[Chunk * Cout];
            _shiftChunk = new long[Chunk * Cout];
            for (int i = 0; i < Chunk * Cout; i++)
            {
                int c = i % Cout;
                _multChunk[i] = Mult[c];
                _shiftChunk[i] = RShift[c];
                _halfChunk[i] = 1L << (RShift[c] - 1);
            }
        }
    }

    /// <summary>Packs the weights for the int16 pair kernels: [K/2][Np][2] for vpmaddwd, [K][Np] for the portable path.</summary>
    private void PreparePairs()
    {
        _b16 = new short[_kp / 2 * _np * 2];
        _allPairs = new int[_kp / 2];
        for (int k = 0; k < _allPairs.Length; k++) _allPairs[k] = k;
        // A skipped pair saves one multiply-add per vector of output channels; the append costs a few cycles per
        // pair whether or not it is kept. With 512- or 256-bit vpmaddwd the multiplies are cheap enough that a
        // row whose zeros number at most 2·pairs/vectors runs faster without the append. That bound was the
        // fastest of 0, ½, 1, 2 and "always dense" on the shipped model: 2.84 ms p50 against 3.18 with AVX-512,
        // and 4.72 against 4.94 with AVX2, where always-dense was 4.63. At 128 bits skipping every zero pays
        // (dense rows were 1–10 % slower), so the bound stays 0 there.
        int vectors = Wide ? _np / 16 : InstructionSets.Avx2 ? _np / 8 : 0;
        _denseZeroLimit = vectors == 0 ? 0 : 2 * _allPairs.Length / vectors;
        _b32 = new int[_k * _np];
        _biasP = new int[_np];
        for (int n = 0; n < Cout; n++)
        {
            _biasP[n] = Bias[n];
            for (int k = 0; k < _k; k++)
            {
                sbyte w = W[n * _k + k];       // Conv2D [Cout][Kh][Kw][Cin] is already [Cout][K] in im2col order
                _b16[((k >> 1) * _np + n) * 2 + (k & 1)] = w;
                _b32[k * _np + n] = w;
            }
        }
    }

    public override void EvalOptimized(ExecState s)
    {
        ReadOnlySpan<sbyte> x = s.Tensor(InputIndices[0]);
        Span<sbyte> y = s.Tensor(OutputIndex);
        if (Kind == OpKind.DepthwiseConv2D) Depthwise(s, x, y);
        else Gemm(x, y);
    }

    /// <summary>Requantizes <paramref name="count"/> positions of accumulators (stride Cout) into y.</summary>
    private void Flush(Span<int> acc, int count, Span<sbyte> y)
    {
        int len = count * Cout;
        if (_multChunk.Length != 0)
        {
            int done = VectorOps.RequantizePerChannelAvx2(acc[..len], _multChunk.AsSpan(0, len), _shiftChunk.AsSpan(0, len),
                _halfChunk.AsSpan(0, len), y[..len], ZpOut, Lo, Hi);
            for (int i = done; i < len; i++)
            {
                int c = i % Cout;
                y[i] = (sbyte)Requant.Apply(acc[i], Mult[c], RShift[c], ZpOut, Lo, Hi);
            }
            return;
        }
        if (_vectorRequant)
        {
            VectorOps.Requantize(acc[..len], _multTiled.AsSpan(0, len), _shift, y[..len], ZpOut, Lo, Hi);
            return;
        }
        for (int i = 0; i < len; i++)
        {
            int c = i % Cout;
            y[i] = (sbyte)Requant.Apply(acc[i], Mult[c], RShift[c], ZpOut, Lo, Hi);
        }
    }

    // ---------------------------------------------------------------- GEMM family

    /// <summary>The GEMM family's loop over output positions: one input row and its accumulators at a time (the pair
    /// kernels here, the quad kernels of ConvOp.Dot.cs where the CPU has them), requantized a chunk at a time.</summary>
    private void Gemm(ReadOnlySpan<sbyte> x, Span<sbyte> y)
    {
        int pairs = _kp / 2;
        Span<int> idx = Buffers.Ints.AsSpan(0, pairs);
        Span<int> acc = Buffers.Ints.AsSpan(pairs, Chunk * Cout + _np);
        int positions = Kind == OpKind.Dense ? 1 : Hout * Wout;
        bool pointwise = Kind == OpKind.PointwiseConv2D || Kind == OpKind.Dense
                         || (Kh == 1 && Kw == 1 && PadTop == 0 && PadLeft == 0);
        for (int p0 = 0; p0 < positions; p0 += Chunk)
        {
            int count = Math.Min(Chunk, positions - p0);
            for (int j = 0; j < count; j++)
            {
                int p = p0 + j;
                // A pointwise row is the input pixel itself; other windows are gathered (im2col).
                int src = !pointwise ? -1 : Kind == OpKind.Conv2D ? ((p / Wout) * Sh * Win + (p % Wout) * Sw) * Cin : p * _k;
                var dst = acc.Slice(j * Cout, _np);
                if (_dot) QuadRow(x, src, p, dst);
                else PairRow(x, src, p, idx, dst);
            }
            Flush(acc, count, y.Slice(p0 * Cout, count * Cout));
        }
    }

    /// <summary>One position with the int16 pair kernels: deviations, event compaction, accumulation.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void PairRow(ReadOnlySpan<sbyte> x, int src, int p, Span<int> idx, Span<int> dst)
    {
        var sh = Buffers.Shorts.AsSpan(0, _kp + 64);
        if (src >= 0) Deviations(x.Slice(src, _k), ZpIn, sh);
        else Im2Col(x, p / Wout, p % Wout, sh);
        if ((_k & 1) != 0) sh[_k] = 0;
        var pairView = MemoryMarshal.Cast<short, int>(sh[.._kp]);
        // Event-driven: keep only pairs with a non-zero deviation (branch-free append), unless the row is
        // so dense that the append costs more than the multiplies it saves (see _denseZeroLimit).
        ReadOnlySpan<int> events;
        if (_denseZeroLimit > 0 && VectorOps.CountZeros(pairView) <= _denseZeroLimit)
            events = _allPairs;
        else
        {
            int n = 0;
            for (int k = 0; k < pairView.Length; k++)
            {
                idx[n] = k;
                n += pairView[k] != 0 ? 1 : 0;
            }
            events = idx[..n];
        }
        if (Wide) Accumulate512(pairView, events, dst);
        else if (InstructionSets.Avx2) Accumulate256(pairView, events, dst);
        else if (InstructionSets.Sse2) Accumulate128(pairView, events, dst);
        else AccumulatePortable(sh, events, dst);
    }

    /// <summary>dst[i] = x[i] − z as int16 (vectorised when 32 values fit).</summary>
    private static void Deviations(ReadOnlySpan<sbyte> x, int zp, Span<short> dst)
    {
        int i = 0;
        if (InstructionSets.Vector256)
        {
            var z = Vector256.Create((short)zp);
            ref sbyte rx = ref MemoryMarshal.GetReference(x);
            ref short rd = ref MemoryMarshal.GetReference(dst);
            for (; i + 16 <= x.Length; i += 16)
            {
                var v = Vector256.WidenLower(Vector128.LoadUnsafe(ref rx, (nuint)i).ToVector256Unsafe());
                (v - z).StoreUnsafe(ref rd, (nuint)i);
            }
        }
        for (; i < x.Length; i++) dst[i] = (short)(x[i] - zp);
    }

    private void Im2Col(ReadOnlySpan<sbyte> x, int oy, int ox, Span<short> dst)
    {
        int o = 0;
        for (int ky = 0; ky < Kh; ky++)
        {
            int iy = oy * Sh - PadTop + ky;
            for (int kx = 0; kx < Kw; kx++, o += Cin)
            {
                int ix = ox * Sw - PadLeft + kx;
                if ((uint)iy >= (uint)Hin || (uint)ix >= (uint)Win) dst.Slice(o, Cin).Clear();
                else Deviations(x.Slice((iy * Win + ix) * Cin, Cin), ZpIn, dst.Slice(o, Cin));
            }
        }
    }

    private void Accumulate512(ReadOnlySpan<int> pairs, ReadOnlySpan<int> idx, Span<int> dst)
    {
        ref short b = ref MemoryMarshal.GetArrayDataReference(_b16);
        ref int rb = ref MemoryMarshal.GetArrayDataReference(_biasP);
        ref int rd = ref MemoryMarshal.GetReference(dst);
        ref int rp = ref MemoryMarshal.GetReference(pairs);
        ref int ri = ref MemoryMarshal.GetReference(idx);
        int np = _np, n = idx.Length, g = 0;
        int rowStride = np * 2;   // shorts per pair row
        for (; g + 4 * Group <= np; g += 4 * Group)
        {
            var a0 = Vector512.LoadUnsafe(ref rb, (nuint)g);
            var a1 = Vector512.LoadUnsafe(ref rb, (nuint)(g + 16));
            var a2 = Vector512.LoadUnsafe(ref rb, (nuint)(g + 32));
            var a3 = Vector512.LoadUnsafe(ref rb, (nuint)(g + 48));
            for (int t = 0; t < n; t++)
            {
                int k = Unsafe.Add(ref ri, t);
                var xv = Vector512.Create(Unsafe.Add(ref rp, k)).AsInt16();
                ref short row = ref Unsafe.Add(ref b, k * rowStride + g * 2);
                a0 += Avx512BW.MultiplyAddAdjacent(xv, Vector512.LoadUnsafe(ref row));
                a1 += Avx512BW.MultiplyAddAdjacent(xv, Vector512.LoadUnsafe(ref row, 32));
                a2 += Avx512BW.MultiplyAddAdjacent(xv, Vector512.LoadUnsafe(ref row, 64));
                a3 += Avx512BW.MultiplyAddAdjacent(xv, Vector512.LoadUnsafe(ref row, 96));
            }
            a0.StoreUnsafe(ref rd, (nuint)g);
            a1.StoreUnsafe(ref rd, (nuint)(g + 16));
            a2.StoreUnsafe(ref rd, (nuint)(g + 32));
            a3.StoreUnsafe(ref rd, (nuint)(g + 48));
        }
        for (; g + 2 * Group <= np; g += 2 * Group)
        {
            var a0 = Vector512.LoadUnsafe(ref rb, (nuint)g);
            var a1 = Vector512.LoadUnsafe(ref rb, (nuint)(g + 16));
            for (int t = 0; t < n; t++)
            {
                int k = Unsafe.Add(ref ri, t);
                var xv = Vector512.Create(Unsafe.Add(ref rp, k)).AsInt16();
                ref short row = ref Unsafe.Add(ref b, k * rowStride + g * 2);
                a0 += Avx512BW.MultiplyAddAdjacent(xv, Vector512.LoadUnsafe(ref row));
                a1 += Avx512BW.MultiplyAddAdjacent(xv, Vector512.LoadUnsafe(ref row, 32));
            }
            a0.StoreUnsafe(ref rd, (nuint)g);
            a1.StoreUnsafe(ref rd, (nuint)(g + 16));
        }
        for (; g < np; g += Group)
        {
            var a0 = Vector512.LoadUnsafe(ref rb, (nuint)g);
            for (int t = 0; t < n; t++)
            {
                int k = Unsafe.Add(ref ri, t);
                var xv = Vector512.Create(Unsafe.Add(ref rp, k)).AsInt16();
                a0 += Avx512BW.MultiplyAddAdjacent(xv, Vector512.LoadUnsafe(ref Unsafe.Add(ref b, k * rowStride + g * 2)));
            }
            a0.StoreUnsafe(ref rd, (nuint)g);
        }
    }

    /// <summary>AVX2 (x86-64-v3): vpmaddwd on 256-bit vectors, 16 exact MACs per instruction, 32 channels per step.</summary>
    private void Accumulate256(ReadOnlySpan<int> pairs, ReadOnlySpan<int> idx, Span<int> dst)
    {
        ref short b = ref MemoryMarshal.GetArrayDataReference(_b16);
        ref int rb = ref MemoryMarshal.GetArrayDataReference(_biasP);
        ref int rd = ref MemoryMarshal.GetReference(dst);
        ref int rp = ref MemoryMarshal.GetReference(pairs);
        ref int ri = ref MemoryMarshal.GetReference(idx);
        int np = _np, n = idx.Length, g = 0;
        int rowStride = np * 2;
        for (; g + 2 * Group <= np; g += 2 * Group)
        {
            var a0 = Vector256.LoadUnsafe(ref rb, (nuint)g);
            var a1 = Vector256.LoadUnsafe(ref rb, (nuint)(g + 8));
            var a2 = Vector256.LoadUnsafe(ref rb, (nuint)(g + 16));
            var a3 = Vector256.LoadUnsafe(ref rb, (nuint)(g + 24));
            for (int t = 0; t < n; t++)
            {
                int k = Unsafe.Add(ref ri, t);
                var xv = Vector256.Create(Unsafe.Add(ref rp, k)).AsInt16();
                ref short row = ref Unsafe.Add(ref b, k * rowStride + g * 2);
                a0 += Avx2.MultiplyAddAdjacent(xv, Vector256.LoadUnsafe(ref row));
                a1 += Avx2.MultiplyAddAdjacent(xv, Vector256.LoadUnsafe(ref row, 16));
                a2 += Avx2.MultiplyAddAdjacent(xv, Vector256.LoadUnsafe(ref row, 32));
                a3 += Avx2.MultiplyAddAdjacent(xv, Vector256.LoadUnsafe(ref row, 48));
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
            for (int t = 0; t < n; t++)
            {
                int k = Unsafe.Add(ref ri, t);
                var xv = Vector256.Create(Unsafe.Add(ref rp, k)).AsInt16();
                ref short row = ref Unsafe.Add(ref b, k * rowStride + g * 2);
                a0 += Avx2.MultiplyAddAdjacent(xv, Vector256.LoadUnsafe(ref row));
                a1 += Avx2.MultiplyAddAdjacent(xv, Vector256.LoadUnsafe(ref row, 16));
            }
            a0.StoreUnsafe(ref rd, (nuint)g);
            a1.StoreUnsafe(ref rd, (nuint)(g + 8));
        }
    }

    /// <summary>SSE2 (x86-64-v2): vpmaddwd on 128-bit vectors, 8 exact MACs per instruction, 16 channels per step.</summary>
    private void Accumulate128(ReadOnlySpan<int> pairs, ReadOnlySpan<int> idx, Span<int> dst)
    {
        ref short b = ref MemoryMarshal.GetArrayDataReference(_b16);
        ref int rb = ref MemoryMarshal.GetArrayDataReference(_biasP);
        ref int rd = ref MemoryMarshal.GetReference(dst);
        ref int rp = ref MemoryMarshal.GetReference(pairs);
        ref int ri = ref MemoryMarshal.GetReference(idx);
        int np = _np, n = idx.Length;
        int rowStride = np * 2;
        for (int g = 0; g < np; g += Group)
        {
            var a0 = Vector128.LoadUnsafe(ref rb, (nuint)g);
            var a1 = Vector128.LoadUnsafe(ref rb, (nuint)(g + 4));
            var a2 = Vector128.LoadUnsafe(ref rb, (nuint)(g + 8));
            var a3 = Vector128.LoadUnsafe(ref rb, (nuint)(g + 12));
            for (int t = 0; t < n; t++)
            {
                int k = Unsafe.Add(ref ri, t);
                var xv = Vector128.Create(Unsafe.Add(ref rp, k)).AsInt16();
                ref short row = ref Unsafe.Add(ref b, k * rowStride + g * 2);
                a0 += Sse2.MultiplyAddAdjacent(xv, Vector128.LoadUnsafe(ref row));
                a1 += Sse2.MultiplyAddAdjacent(xv, Vector128.LoadUnsafe(ref row, 8));
                a2 += Sse2.MultiplyAddAdjacent(xv, Vector128.LoadUnsafe(ref row, 16));
                a3 += Sse2.MultiplyAddAdjacent(xv, Vector128.LoadUnsafe(ref row, 24));
            }
            a0.StoreUnsafe(ref rd, (nuint)g);
            a1.StoreUnsafe(ref rd, (nuint)(g + 4));
            a2.StoreUnsafe(ref rd, (nuint)(g + 8));
            a3.StoreUnsafe(ref rd, (nuint)(g + 12));
        }
    }

    /// <summary>Portable: int32 lanes (Vector128: AdvSimd on ARM64, SSE on x64), one input value per step.</summary>
    private void AccumulatePortable(ReadOnlySpan<short> dev, ReadOnlySpan<int> idx, Span<int> dst)
    {
        ref int b = ref MemoryMarshal.GetArrayDataReference(_b32);
        ref int rb = ref MemoryMarshal.GetArrayDataReference(_biasP);
        ref int rd = ref MemoryMarshal.GetReference(dst);
        int np = _np;
        for (int g = 0; g < np; g += Group)
        {
            var a0 = Vector128.LoadUnsafe(ref rb, (nuint)g);
            var a1 = Vector128.LoadUnsafe(ref rb, (nuint)(g + 4));
            var a2 = Vector128.LoadUnsafe(ref rb, (nuint)(g + 8));
            var a3 = Vector128.LoadUnsafe(ref rb, (nuint)(g + 12));
            foreach (int pair in idx)
            {
                for (int h = 0; h < 2; h++)
                {
                    int k = pair * 2 + h;
                    if (k >= _k) break;
                    var xv = Vector128.Create((int)dev[k]);
                    ref int row = ref Unsafe.Add(ref b, k * np + g);
                    a0 += xv * Vector128.LoadUnsafe(ref row);
                    a1 += xv * Vector128.LoadUnsafe(ref row, 4);
                    a2 += xv * Vector128.LoadUnsafe(ref row, 8);
                    a3 += xv * Vector128.LoadUnsafe(ref row, 12);
                }
            }
            a0.StoreUnsafe(ref rd, (nuint)g);
            a1.StoreUnsafe(ref rd, (nuint)(g + 4));
            a2.StoreUnsafe(ref rd, (nuint)(g + 8));
            a3.StoreUnsafe(ref rd, (nuint)(g + 12));
        }
    }

    // ---------------------------------------------------------------- depthwise

    private void Depthwise(ExecState s, ReadOnlySpan<sbyte> x, Span<sbyte> y)
    {
        var ints = Buffers.Ints;
        int c = Cout;
        ref sbyte arena = ref MemoryMarshal.GetArrayDataReference(s.Arena);
        int xBase = s.Offset[InputIndices[0]];
        bool narrow = !Wide && (InstructionSets.Avx2 || InstructionSets.Vector128);
        if ((Wide || narrow) && Kh == 3 && Kw == 3)
        {
            // Row-at-a-time 3×3: nine weight vectors stay in registers, rows above/below the image read a row
            // of zero points, and only the border columns test bounds.
            var zpRow = Buffers.Bytes.AsSpan(0, Win * Cin + 64);
            zpRow.Fill((sbyte)ZpIn);
            Span<int> rowAcc = ints.AsSpan(0, Wout * c + _np);
            for (int oy = 0; oy < Hout; oy++)
            {
                if (Wide) Dw3x3Row512(ref arena, xBase, zpRow, oy, rowAcc);
                else Dw3x3RowNarrow(ref arena, xBase, zpRow, oy, rowAcc, InstructionSets.Avx2);
                for (int p0 = 0; p0 < Wout; p0 += Chunk)
                {
                    int count = Math.Min(Chunk, Wout - p0);
                    Flush(rowAcc.Slice(p0 * c), count, y.Slice((oy * Wout + p0) * c, count * c));
                }
            }
            return;
        }
        Span<int> acc = ints.AsSpan(0, Chunk * Cout + _np);
        int positions = Hout * Wout;
        // Groups of 16 channels read 16 bytes; the last group of a pixel may read past the tensor into the
        // arena's slack (zero weights discard those lanes).
        for (int p0 = 0; p0 < positions; p0 += Chunk)
        {
            int count = Math.Min(Chunk, positions - p0);
            for (int j = 0; j < count; j++)
            {
                int p = p0 + j, oy = p / Wout, ox = p % Wout;
                var dst = acc.Slice(j * c, _np);
                if (Wide) Dw512(ref arena, xBase, oy, ox, dst);
                else DwPortable(ref arena, xBase, oy, ox, dst);
            }
            Flush(acc, count, y.Slice(p0 * c, count * c));
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Madd(ref sbyte p, int offset, Vector512<int> w) =>
        Avx512BW.MultiplyAddAdjacent(Avx512F.ConvertToVector512Int32(Vector128.LoadUnsafe(ref p, (nuint)offset)).AsInt16(), w.AsInt16());

    /// <summary>
    /// One output row of a 3×3 depthwise convolution into acc[ox·C + c]. Groups run from the last to the first so
    /// that the last group's spill past C lands on the next pixel's first group, written afterwards.
    /// </summary>
    private void Dw3x3Row512(ref sbyte arena, int xBase, Span<sbyte> zpRow, int oy, Span<int> acc)
    {
        int c = Cout, win = Win, sw = Sw;
        ref sbyte zr = ref MemoryMarshal.GetReference(zpRow);
        int iy0 = oy * Sh - PadTop;
        ref sbyte r0 = ref (uint)iy0 < (uint)Hin ? ref Unsafe.Add(ref arena, xBase + iy0 * win * c) : ref zr;
        ref sbyte r1 = ref (uint)(iy0 + 1) < (uint)Hin ? ref Unsafe.Add(ref arena, xBase + (iy0 + 1) * win * c) : ref zr;
        ref sbyte r2 = ref (uint)(iy0 + 2) < (uint)Hin ? ref Unsafe.Add(ref arena, xBase + (iy0 + 2) * win * c) : ref zr;
        ref int w = ref MemoryMarshal.GetArrayDataReference(_w16);
        ref int rb = ref MemoryMarshal.GetArrayDataReference(_biasP);
        ref int ra = ref MemoryMarshal.GetReference(acc);
        // Interior columns: every tap inside the row.
        int first = Math.Max(0, (PadLeft + sw - 1) / sw);
        int last = win - 3 + PadLeft < 0 ? -1 : Math.Min(Wout - 1, (win - 3 + PadLeft) / sw);     // ix0 + 2 ≤ win − 1 (floor division)
        var zpv = Vector512.Create(ZpIn);
        for (int g = (_np - Group); g >= 0; g -= Group)
        {
            var w0 = Vector512.LoadUnsafe(ref w, (nuint)(0 * _np + g)); var w1 = Vector512.LoadUnsafe(ref w, (nuint)(1 * _np + g));
            var w2 = Vector512.LoadUnsafe(ref w, (nuint)(2 * _np + g)); var w3 = Vector512.LoadUnsafe(ref w, (nuint)(3 * _np + g));
            var w4 = Vector512.LoadUnsafe(ref w, (nuint)(4 * _np + g)); var w5 = Vector512.LoadUnsafe(ref w, (nuint)(5 * _np + g));
            var w6 = Vector512.LoadUnsafe(ref w, (nuint)(6 * _np + g)); var w7 = Vector512.LoadUnsafe(ref w, (nuint)(7 * _np + g));
            var w8 = Vector512.LoadUnsafe(ref w, (nuint)(8 * _np + g));
            var bias = Vector512.LoadUnsafe(ref rb, (nuint)g);
            // Left border, interior, right border, in ascending ox: a spill past C always lands on a later write.
            int leftEnd = Math.Min(first, Wout);
            for (int ox = 0; ox < leftEnd; ox++) DwBorder(ref r0, ref r1, ref r2, ref w, bias, zpv, ox, g, ref ra);
            for (int ox = first; ox <= last; ox++)
            {
                int o = (ox * sw - PadLeft) * c + g;
                var a = bias
                    + Madd(ref r0, o, w0) + Madd(ref r0, o + c, w1) + Madd(ref r0, o + 2 * c, w2)
                    + Madd(ref r1, o, w3) + Madd(ref r1, o + c, w4) + Madd(ref r1, o + 2 * c, w5)
                    + Madd(ref r2, o, w6) + Madd(ref r2, o + c, w7) + Madd(ref r2, o + 2 * c, w8);
                a.StoreUnsafe(ref ra, (nuint)(ox * c + g));
            }
            for (int ox = Math.Max(last + 1, leftEnd); ox < Wout; ox++) DwBorder(ref r0, ref r1, ref r2, ref w, bias, zpv, ox, g, ref ra);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Load8(ref sbyte p, int offset) =>
        Avx2.ConvertToVector256Int32(Vector128.CreateScalar(Unsafe.ReadUnaligned<long>(ref Unsafe.As<sbyte, byte>(ref Unsafe.Add(ref p, offset)))).AsSByte());

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<int> Load4(ref sbyte p, int offset)
    {
        var v = Vector128.CreateScalar(Unsafe.ReadUnaligned<int>(ref Unsafe.As<sbyte, byte>(ref Unsafe.Add(ref p, offset)))).AsSByte();
        return Vector128.WidenLower(Vector128.WidenLower(v));
    }

    /// <summary>
    /// <see cref="Dw3x3Row512"/> for AVX2 (8 channels per step, vpmaddwd as the exact 16×16 multiply) and, with
    /// <paramref name="lanes"/> = 4, for any 128-bit SIMD (int32 multiplies: SSE4.1, AdvSimd on ARM64). Channel
    /// groups run only up to C and from the last to the first, so a spill past C lands on the next pixel's first
    /// channels, written afterwards; taps outside the image read the zero point (cancelled by the folded bias).
    /// </summary>
    private void Dw3x3RowNarrow(ref sbyte arena, int xBase, Span<sbyte> zpRow, int oy, Span<int> acc, bool avx2)
    {
        int c = Cout, win = Win, sw = Sw, lanes = avx2 ? 8 : 4;
        ref sbyte zr = ref MemoryMarshal.GetReference(zpRow);
        int iy0 = oy * Sh - PadTop;
        ref sbyte r0 = ref (uint)iy0 < (uint)Hin ? ref Unsafe.Add(ref arena, xBase + iy0 * win * c) : ref zr;
        ref sbyte r1 = ref (uint)(iy0 + 1) < (uint)Hin ? ref Unsafe.Add(ref arena, xBase + (iy0 + 1) * win * c) : ref zr;
        ref sbyte r2 = ref (uint)(iy0 + 2) < (uint)Hin ? ref Unsafe.Add(ref arena, xBase + (iy0 + 2) * win * c) : ref zr;
        ref int w = ref MemoryMarshal.GetArrayDataReference(avx2 ? _w16 : _b32);
        ref int rb = ref MemoryMarshal.GetArrayDataReference(_biasP);
        ref int ra = ref MemoryMarshal.GetReference(acc);
        int first = Math.Max(0, (PadLeft + sw - 1) / sw);
        int last = win - 3 + PadLeft < 0 ? -1 : Math.Min(Wout - 1, (win - 3 + PadLeft) / sw);
        int leftEnd = Math.Min(first, Wout);
        int np = _np;
        var zp8 = Vector256.Create(ZpIn);   // int32 lanes: (z, sign) · (w, 0) = z·w under vpmaddwd
        var zp4 = Vector128.Create(ZpIn);
        for (int g = (c + lanes - 1) / lanes * lanes - lanes; g >= 0; g -= lanes)
        {
            if (avx2)
            {
                var w0 = Vector256.LoadUnsafe(ref w, (nuint)(0 * np + g)).AsInt16(); var w1 = Vector256.LoadUnsafe(ref w, (nuint)(1 * np + g)).AsInt16();
                var w2 = Vector256.LoadUnsafe(ref w, (nuint)(2 * np + g)).AsInt16(); var w3 = Vector256.LoadUnsafe(ref w, (nuint)(3 * np + g)).AsInt16();
                var w4 = Vector256.LoadUnsafe(ref w, (nuint)(4 * np + g)).AsInt16(); var w5 = Vector256.LoadUnsafe(ref w, (nuint)(5 * np + g)).AsInt16();
                var w6 = Vector256.LoadUnsafe(ref w, (nuint)(6 * np + g)).AsInt16(); var w7 = Vector256.LoadUnsafe(ref w, (nuint)(7 * np + g)).AsInt16();
                var w8 = Vector256.LoadUnsafe(ref w, (nuint)(8 * np + g)).AsInt16();
                var bias = Vector256.LoadUnsafe(ref rb, (nuint)g);
                for (int ox = 0; ox < Wout; ox++)
                {
                    if (ox == leftEnd && first <= last)
                    {
                        for (; ox <= last; ox++)
                        {
                            int o = (ox * sw - PadLeft) * c + g;
                            var a = bias
                                + Avx2.MultiplyAddAdjacent(Load8(ref r0, o).AsInt16(), w0) + Avx2.MultiplyAddAdjacent(Load8(ref r0, o + c).AsInt16(), w1)
                                + Avx2.MultiplyAddAdjacent(Load8(ref r0, o + 2 * c).AsInt16(), w2)
                                + Avx2.MultiplyAddAdjacent(Load8(ref r1, o).AsInt16(), w3) + Avx2.MultiplyAddAdjacent(Load8(ref r1, o + c).AsInt16(), w4)
                                + Avx2.MultiplyAddAdjacent(Load8(ref r1, o + 2 * c).AsInt16(), w5)
                                + Avx2.MultiplyAddAdjacent(Load8(ref r2, o).AsInt16(), w6) + Avx2.MultiplyAddAdjacent(Load8(ref r2, o + c).AsInt16(), w7)
                                + Avx2.MultiplyAddAdjacent(Load8(ref r2, o + 2 * c).AsInt16(), w8);
                            a.StoreUnsafe(ref ra, (nuint)(ox * c + g));
                        }
                        if (ox >= Wout) break;
                    }
                    // Border column: taps outside the row read the zero point.
                    var b = bias;
                    int ix0 = ox * sw - PadLeft;
                    for (int kx = 0; kx < 3; kx++)
                    {
                        int ix = ix0 + kx;
                        bool inside = (uint)ix < (uint)win;
                        int o = ix * c + g;
                        var x0 = inside ? Load8(ref r0, o) : zp8;
                        var x1 = inside ? Load8(ref r1, o) : zp8;
                        var x2 = inside ? Load8(ref r2, o) : zp8;
                        b += Avx2.MultiplyAddAdjacent(x0.AsInt16(), Vector256.LoadUnsafe(ref w, (nuint)(kx * np + g)).AsInt16())
                           + Avx2.MultiplyAddAdjacent(x1.AsInt16(), Vector256.LoadUnsafe(ref w, (nuint)((3 + kx) * np + g)).AsInt16())
                           + Avx2.MultiplyAddAdjacent(x2.AsInt16(), Vector256.LoadUnsafe(ref w, (nuint)((6 + kx) * np + g)).AsInt16());
                    }
                    b.StoreUnsafe(ref ra, (nuint)(ox * c + g));
                }
            }
            else
            {
                var w0 = Vector128.LoadUnsafe(ref w, (nuint)(0 * np + g)); var w1 = Vector128.LoadUnsafe(ref w, (nuint)(1 * np + g));
                var w2 = Vector128.LoadUnsafe(ref w, (nuint)(2 * np + g)); var w3 = Vector128.LoadUnsafe(ref w, (nuint)(3 * np + g));
                var w4 = Vector128.LoadUnsafe(ref w, (nuint)(4 * np + g)); var w5 = Vector128.LoadUnsafe(ref w, (nuint)(5 * np + g));
                var w6 = Vector128.LoadUnsafe(ref w, (nuint)(6 * np + g)); var w7 = Vector128.LoadUnsafe(ref w, (nuint)(7 * np + g));
                var w8 = Vector128.LoadUnsafe(ref w, (nuint)(8 * np + g));
                var bias = Vector128.LoadUnsafe(ref rb, (nuint)g);
                for (int ox = 0; ox < Wout; ox++)
                {
                    if (ox == leftEnd && first <= last)
                    {
                        for (; ox <= last; ox++)
                        {
                            int o = (ox * sw - PadLeft) * c + g;
                            var a = bias
                                + Load4(ref r0, o) * w0 + Load4(ref r0, o + c) * w1 + Load4(ref r0, o + 2 * c) * w2
                                + Load4(ref r1, o) * w3 + Load4(ref r1, o + c) * w4 + Load4(ref r1, o + 2 * c) * w5
                                + Load4(ref r2, o) * w6 + Load4(ref r2, o + c) * w7 + Load4(ref r2, o + 2 * c) * w8;
                            a.StoreUnsafe(ref ra, (nuint)(ox * c + g));
                        }
                        if (ox >= Wout) break;
                    }
                    var b = bias;
                    int ix0 = ox * sw - PadLeft;
                    for (int kx = 0; kx < 3; kx++)
                    {
                        int ix = ix0 + kx;
                        bool inside = (uint)ix < (uint)win;
                        int o = ix * c + g;
                        var x0 = inside ? Load4(ref r0, o) : zp4;
                        var x1 = inside ? Load4(ref r1, o) : zp4;
                        var x2 = inside ? Load4(ref r2, o) : zp4;
                        b += x0 * Vector128.LoadUnsafe(ref w, (nuint)(kx * np + g))
                           + x1 * Vector128.LoadUnsafe(ref w, (nuint)((3 + kx) * np + g))
                           + x2 * Vector128.LoadUnsafe(ref w, (nuint)((6 + kx) * np + g));
                    }
                    b.StoreUnsafe(ref ra, (nuint)(ox * c + g));
                }
            }
        }
    }

    /// <summary>A border column: taps outside the row read the zero point (its product cancels in the folded bias).</summary>
    private void DwBorder(ref sbyte r0, ref sbyte r1, ref sbyte r2, ref int w, Vector512<int> bias, Vector512<int> zpv, int ox, int g, ref int ra)
    {
        int c = Cout;
        int ix0 = ox * Sw - PadLeft;
        var a = bias;
        for (int kx = 0; kx < 3; kx++)
        {
            int ix = ix0 + kx;
            bool inside = (uint)ix < (uint)Win;
            int o = ix * c + g;
            var x0 = inside ? Avx512F.ConvertToVector512Int32(Vector128.LoadUnsafe(ref r0, (nuint)o)) : zpv;
            var x1 = inside ? Avx512F.ConvertToVector512Int32(Vector128.LoadUnsafe(ref r1, (nuint)o)) : zpv;
            var x2 = inside ? Avx512F.ConvertToVector512Int32(Vector128.LoadUnsafe(ref r2, (nuint)o)) : zpv;
            a += Avx512BW.MultiplyAddAdjacent(x0.AsInt16(), Vector512.LoadUnsafe(ref w, (nuint)(kx * _np + g)).AsInt16())
               + Avx512BW.MultiplyAddAdjacent(x1.AsInt16(), Vector512.LoadUnsafe(ref w, (nuint)((3 + kx) * _np + g)).AsInt16())
               + Avx512BW.MultiplyAddAdjacent(x2.AsInt16(), Vector512.LoadUnsafe(ref w, (nuint)((6 + kx) * _np + g)).AsInt16());
        }
        a.StoreUnsafe(ref ra, (nuint)(ox * c + g));
    }

    private void Dw512(ref sbyte arena, int xBase, int oy, int ox, Span<int> dst)
    {
        ref int w = ref MemoryMarshal.GetArrayDataReference(_b32);
        ref int rb = ref MemoryMarshal.GetArrayDataReference(_biasP);
        ref int rd = ref MemoryMarshal.GetReference(dst);
        var zp = Vector512.Create(ZpIn);
        for (int g = 0; g < _np; g += Group)
        {
            var a = Vector512.LoadUnsafe(ref rb, (nuint)g);
            for (int ky = 0; ky < Kh; ky++)
            {
                int iy = oy * Sh - PadTop + ky;
                bool rowIn = (uint)iy < (uint)Hin;
                for (int kx = 0; kx < Kw; kx++)
                {
                    int ix = ox * Sw - PadLeft + kx;
                    var xv = rowIn && (uint)ix < (uint)Win
                        ? Avx512F.ConvertToVector512Int32(Vector128.LoadUnsafe(ref arena, (nuint)(xBase + (iy * Win + ix) * Cout + g)))
                        : zp;
                    a += xv * Vector512.LoadUnsafe(ref w, (nuint)((ky * Kw + kx) * _np + g));
                }
            }
            a.StoreUnsafe(ref rd, (nuint)g);
        }
    }

    private void DwPortable(ref sbyte arena, int xBase, int oy, int ox, Span<int> dst)
    {
        ref int w = ref MemoryMarshal.GetArrayDataReference(_b32);
        ref int rb = ref MemoryMarshal.GetArrayDataReference(_biasP);
        ref int rd = ref MemoryMarshal.GetReference(dst);
        var zp = Vector128.Create(ZpIn);
        for (int g = 0; g < _np; g += Group)
        {
            var a0 = Vector128.LoadUnsafe(ref rb, (nuint)g);
            var a1 = Vector128.LoadUnsafe(ref rb, (nuint)(g + 4));
            var a2 = Vector128.LoadUnsafe(ref rb, (nuint)(g + 8));
            var a3 = Vector128.LoadUnsafe(ref rb, (nuint)(g + 12));
            for (int ky = 0; ky < Kh; ky++)
            {
                int iy = oy * Sh - PadTop + ky;
                bool rowIn = (uint)iy < (uint)Hin;
                for (int kx = 0; kx < Kw; kx++)
                {
                    int ix = ox * Sw - PadLeft + kx;
                    Vector128<int> x0 = zp, x1 = zp, x2 = zp, x3 = zp;
                    if (rowIn && (uint)ix < (uint)Win)
                    {
                        var v = Vector128.LoadUnsafe(ref arena, (nuint)(xBase + (iy * Win + ix) * Cout + g));
                        var lo = Vector128.WidenLower(v);
                        var hi = Vector128.WidenUpper(v);
                        x0 = Vector128.WidenLower(lo); x1 = Vector128.WidenUpper(lo);
                        x2 = Vector128.WidenLower(hi); x3 = Vector128.WidenUpper(hi);
                    }
                    ref int row = ref Unsafe.Add(ref w, (ky * Kw + kx) * _np + g);
                    a0 += x0 * Vector128.LoadUnsafe(ref row);
                    a1 += x1 * Vector128.LoadUnsafe(ref row, 4);
                    a2 += x2 * Vector128.LoadUnsafe(ref row, 8);
                    a3 += x3 * Vector128.LoadUnsafe(ref row, 12);
                }
            }
            a0.StoreUnsafe(ref rd, (nuint)g);
            a1.StoreUnsafe(ref rd, (nuint)(g + 4));
            a2.StoreUnsafe(ref rd, (nuint)(g + 8));
            a3.StoreUnsafe(ref rd, (nuint)(g + 12));
        }
    }
}
