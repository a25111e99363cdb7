using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using QanaEdge.Runtime.Plan;

namespace QanaEdge.Runtime.Kernels;

/// <summary>
/// Element-wise optimized kernels. Their outputs depend on one or two int8 values only, so prepare
/// tabulates the reference formula (256 or 65,536 entries) and eval is a table walk: bit-exact by construction.
/// </summary>
internal static class OptimizedKernels
{
    public static void Add(AddOp op, ExecState s) =>
        Pairwise(s.Tensor(op.InputIndices[0]), s.Tensor(op.InputIndices[1]), op.Table, s.Tensor(op.OutputIndex));

    public static void Mul(MulOp op, ExecState s)
    {
        ReadOnlySpan<sbyte> x = s.Tensor(op.InputIndices[0]), g = s.Tensor(op.InputIndices[1]);
        Span<sbyte> y = s.Tensor(op.OutputIndex);
        int c = op.Output.Channels, positions = op.Output.Height * op.Output.Width;
        ref sbyte t = ref MemoryMarshal.GetArrayDataReference(op.Table);
        switch (op.Shape)
        {
            case GateShape.Full:
                Pairwise(x, g, op.Table, y);
                break;
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
        int positions = op.Output.Height * op.Output.Width, cOut = op.Output.Channels, c0 = 0;
        for (int k = 0; k < op.Inputs.Length; k++)
        {
            ReadOnlySpan<sbyte> x = s.Tensor(op.InputIndices[k]);
            int c = op.Inputs[k].Channels;
            bool copy = op.Identity[k] && op.Lo == sbyte.MinValue && op.Hi == sbyte.MaxValue;
            for (int p = 0; p < positions; p++)
            {
                if (copy) x.Slice(p * c, c).CopyTo(y.Slice(p * cOut + c0, c));
                else Lut(x.Slice(p * c, c), op.Tables[k], y.Slice(p * cOut + c0, c));
            }
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
