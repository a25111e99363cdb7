using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using QanaEdge.Runtime.Plan;

namespace QanaEdge.Runtime.Kernels;

/// <summary>
/// Element-wise optimized kernels. Their outputs depend on one or two int8 values only, so prepare
/// tabulates the reference formula (256 or 65,536 entries) and eval is a table walk: bit-exact by construction.
/// </summary>
internal static class OptimizedKernels
{
    public static void Add(AddOp op, ExecState s)
    {
        ReadOnlySpan<sbyte> a = s.Tensor(op.InputIndices[0]), b = s.Tensor(op.InputIndices[1]);
        Span<sbyte> y = s.Tensor(op.OutputIndex);
        int done = WideKernels.ArithmeticSupported
            ? WideKernels.Add(a, b, y, op.Inputs[0].ZeroPoint, op.MA, op.Inputs[1].ZeroPoint, op.MB, op.Output.ZeroPoint, op.MO, op.Lo, op.Hi, AddOp.LeftShift)
            : WideKernels.Add256(a, b, y, op.Inputs[0].ZeroPoint, op.MA, op.Inputs[1].ZeroPoint, op.MB, op.Output.ZeroPoint, op.MO, op.Lo, op.Hi, AddOp.LeftShift);
        Pairwise(a[done..], b[done..], op.Table, y[done..]);
    }

    public static void Mul(MulOp op, ExecState s)
    {
        ReadOnlySpan<sbyte> x = s.Tensor(op.InputIndices[0]), g = s.Tensor(op.InputIndices[1]);
        Span<sbyte> y = s.Tensor(op.OutputIndex);
        int c = op.Output.Channels, positions = op.Output.Height * op.Output.Width;
        ref sbyte t = ref MemoryMarshal.GetArrayDataReference(op.Table);
        switch (op.Shape)
        {
            case GateShape.Full:
            {
                int done = WideKernels.ArithmeticSupported
                    ? WideKernels.MulFull(x, g, y, op.Inputs[0].ZeroPoint, op.Inputs[1].ZeroPoint, op.M, op.Output.ZeroPoint, op.Lo, op.Hi)
                    : WideKernels.MulFull256(x, g, y, op.Inputs[0].ZeroPoint, op.Inputs[1].ZeroPoint, op.M, op.Output.ZeroPoint, op.Lo, op.Hi);
                Pairwise(x[done..], g[done..], op.Table, y[done..]);
                break;
            }
            case GateShape.Channel:
                for (int p = 0; p < positions; p++)
                    Pairwise(x.Slice(p * c, c), g, op.Table, y.Slice(p * c, c));
                break;
            default:
                for (int p = 0; p < positions; p++)
                {
                    // One gate value per position: its 256-entry column of the table serves the whole pixel.
                    int gi = g[p] + 128;
                    ref sbyte rx = ref MemoryMarshal.GetReference(x.Slice(p * c, c));
                    ref sbyte ry = ref MemoryMarshal.GetReference(y.Slice(p * c, c));
                    for (int ch = 0; ch < c; ch++)
                        Unsafe.Add(ref ry, ch) = Unsafe.Add(ref t, ((Unsafe.Add(ref rx, ch) + 128) << 8) | gi);
                }
                break;
        }
    }

    private static void Pairwise(ReadOnlySpan<sbyte> a, ReadOnlySpan<sbyte> b, sbyte[] table, Span<sbyte> y)
    {
        if (a.Length < y.Length || b.Length < y.Length) throw new ArgumentException("operand shorter than output");
        ref sbyte ra = ref MemoryMarshal.GetReference(a);
        ref sbyte rb = ref MemoryMarshal.GetReference(b);
        ref sbyte ry = ref MemoryMarshal.GetReference(y);
        ref sbyte t = ref MemoryMarshal.GetArrayDataReference(table);
        for (int i = 0; i < y.Length; i++)
            Unsafe.Add(ref ry, i) = Unsafe.Add(ref t, ((Unsafe.Add(ref ra, i) + 128) << 8) | (Unsafe.Add(ref rb, i) + 128));
    }

    private static void Lut(ReadOnlySpan<sbyte> x, sbyte[] table, Span<sbyte> y)
    {
        if (x.Length < y.Length) throw new ArgumentException("operand shorter than output");
        if (WideKernels.LutSupported && y.Length >= 64)
        {
            int done = WideKernels.Lut(x, table, y);
            x = x[done..];
            y = y[done..];
        }
        ref sbyte rx = ref MemoryMarshal.GetReference(x);
        ref sbyte ry = ref MemoryMarshal.GetReference(y);
        ref sbyte t = ref MemoryMarshal.GetArrayDataReference(table);
        for (int i = 0; i < y.Length; i++) Unsafe.Add(ref ry, i) = Unsafe.Add(ref t, Unsafe.Add(ref rx, i) + 128);
    }

    public static void Rescale(RescaleOp op, ExecState s)
    {
        if (op.Identity && op.Lo == sbyte.MinValue && op.Hi == sbyte.MaxValue)
            s.Tensor(op.InputIndices[0]).CopyTo(s.Tensor(op.OutputIndex));
        else
            Lut(s.Tensor(op.InputIndices[0]), op.Table, s.Tensor(op.OutputIndex));
    }

    public static void Sigmoid(SigmoidOp op, ExecState s) =>
        Lut(s.Tensor(op.InputIndices[0]), op.ClampedTable, s.Tensor(op.OutputIndex));

    public static void Concat(ConcatOp op, ExecState s)
    {
        Span<sbyte> y = s.Tensor(op.OutputIndex);
        int positions = op.Output.Height * op.Output.Width, cOut = op.Output.Channels;
        int inputs = op.Inputs.Length;
        // Rescale each input that needs it in one vector pass into scratch; note where each source lives.
        Span<int> offsets = stackalloc int[Math.Min(inputs, 64)];
        if (inputs > 64) { ConcatPerInput(op, s); return; }
        var scratch = op.Buffers.Bytes;
        int used = 0;
        for (int k = 0; k < inputs; k++)
        {
            var x = s.Tensor(op.InputIndices[k]);
            if (op.Identity[k] && op.Lo == sbyte.MinValue && op.Hi == sbyte.MaxValue) { offsets[k] = -1; continue; }
            Lut(x, op.Tables[k], scratch.AsSpan(used, x.Length));
            offsets[k] = used;
            used += x.Length + 64;
        }
        ref sbyte ry = ref MemoryMarshal.GetReference(y);
        // Pixel by pixel, input by input: a 32-byte copy may spill past its c channels onto bytes that the next
        // copy (next input, or next pixel) overwrites. A copy whose 32 bytes would reach past y is made exactly:
        // with fewer than 32 output channels that is more than the last pixel, and the bytes after y may belong to
        // a tensor that is still to be read (buffers are reused).
        bool wide = InstructionSets.Vector256;
        foreach (var t in op.Inputs) wide &= t.Channels <= 32;
        int wideEnd = y.Length - 32;
        for (int p = 0; p < positions; p++)
        {
            int c0 = 0;
            for (int k = 0; k < inputs; k++)
            {
                int c = op.Inputs[k].Channels;
                ReadOnlySpan<sbyte> src = offsets[k] < 0 ? s.Tensor(op.InputIndices[k]) : scratch.AsSpan(offsets[k], op.Inputs[k].Length + 64);
                // Source over-read stays in memory we own: scratch has 64 bytes of slack, the arena 64 after its last tensor.
                if (!wide || p * cOut + c0 > wideEnd)
                    src.Slice(p * c, c).CopyTo(y.Slice(p * cOut + c0, c));
                else
                    Vector256.LoadUnsafe(ref MemoryMarshal.GetReference(src), (nuint)(p * c)).StoreUnsafe(ref ry, (nuint)(p * cOut + c0));
                c0 += c;
            }
        }
    }

    private static void ConcatPerInput(ConcatOp op, ExecState s)
    {
        Span<sbyte> y = s.Tensor(op.OutputIndex);
        int positions = op.Output.Height * op.Output.Width, cOut = op.Output.Channels, c0 = 0;
        for (int k = 0; k < op.Inputs.Length; k++)
        {
            ReadOnlySpan<sbyte> x = s.Tensor(op.InputIndices[k]);
            int c = op.Inputs[k].Channels;
            for (int p = 0; p < positions; p++) Lut(x.Slice(p * c, c), op.Tables[k], y.Slice(p * cOut + c0, c));
            c0 += c;
        }
    }

    public static void Gap(GapOp op, ExecState s)
    {
        ReadOnlySpan<sbyte> x = s.Tensor(op.InputIndices[0]);
        Span<sbyte> y = s.Tensor(op.OutputIndex);
        int c = op.Inputs[0].Channels, positions = op.Inputs[0].Height * op.Inputs[0].Width;
        Span<int> acc = op.Buffers.Ints.AsSpan(0, c);
        acc.Clear();
        for (int p = 0; p < positions; p++)
        {
            ReadOnlySpan<sbyte> row = x.Slice(p * c, c);
            for (int ch = 0; ch < c; ch++) acc[ch] += row[ch];
        }
        // Σ(q − z) = Σq − H·W·z: the zero point is subtracted once per channel, not per element.
        int correction = positions * op.Inputs[0].ZeroPoint;
        for (int ch = 0; ch < c; ch++)
            y[ch] = (sbyte)Requant.Apply(acc[ch] - correction, op.M, op.Output.ZeroPoint, op.Lo, op.Hi);
    }
}
