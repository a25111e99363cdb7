using QanaEdge.Model.Graph;

namespace QanaEdge.Runtime.Plan;

/// <summary>
/// Conv2D, DepthwiseConv2D, PointwiseConv2D and Dense: acc = bias[c] + Σ w·(x − zp_in), then the shared
/// requantization with a per-output-channel Q31 multiplier M_c = s_in·s_w[c]/s_out.
/// </summary>
internal sealed partial class ConvOp : Op
{
    public required OpKind Kind { get; init; }
    public required int Kh { get; init; }
    public required int Kw { get; init; }
    public required int Sh { get; init; }
    public required int Sw { get; init; }
    public required int PadTop { get; init; }
    public required int PadLeft { get; init; }
    public required int Hin { get; init; }
    public required int Win { get; init; }
    public required int Cin { get; init; }
    public required int Hout { get; init; }
    public required int Wout { get; init; }
    public required int Cout { get; init; }
    public required sbyte[] W { get; init; }
    public required int[] Bias { get; init; }
    public required int[] Mult { get; init; }
    public required int[] RShift { get; init; }
    public required int ZpIn { get; init; }
    public required int ZpOut { get; init; }

    public override long Macs => Kind switch
    {
        OpKind.DepthwiseConv2D => (long)Hout * Wout * Cout * Kh * Kw,
        OpKind.Dense => (long)Cout * Cin,
        _ => (long)Hout * Wout * Cout * Kh * Kw * Cin,
    };

    public override string KernelName => (Optimized ? "opt-" : "ref-") + Kind switch
    {
        OpKind.Conv2D => $"conv{Kh}x{Kw}-s{Sh}",
        OpKind.DepthwiseConv2D => $"dw{Kh}x{Kw}-s{Sh}",
        OpKind.PointwiseConv2D => "pw-gemm",
        _ => "dense",
    };

    /// <summary>Σ over the taps of one output of |w|·255 + |bias| must stay below 2^31 (checked at prepare).</summary>
    public static long AccumulatorBound(ReadOnlySpan<sbyte> w, int bias) => IntegerRange.AccumulatorBound(w, bias);

    public override void EvalReference(ExecState s)
    {
        ReadOnlySpan<sbyte> x = s.Tensor(InputIndices[0]);
        Span<sbyte> y = s.Tensor(OutputIndex);
        switch (Kind)
        {
            case OpKind.Conv2D: RefConv(x, y); break;
            case OpKind.DepthwiseConv2D: RefDepthwise(x, y); break;
            default: RefGemm(x, y, Kind == OpKind.Dense ? 1 : Hout * Wout); break;
        }
    }

    // Overflow: every term is |w|·|x − zp| ≤ 128·255 = 32,640 and prepare checks Σ|w|·255 + |bias| < 2^31
    // per output channel (≈ 65,000 taps at full-scale weights), so the int32 accumulators cannot wrap.

    private void RefConv(ReadOnlySpan<sbyte> x, Span<sbyte> y)
    {
        for (int oy = 0; oy < Hout; oy++)
        for (int ox = 0; ox < Wout; ox++)
        for (int co = 0; co < Cout; co++)
        {
            int acc = Bias[co];
            for (int ky = 0; ky < Kh; ky++)
            {
                int iy = oy * Sh - PadTop + ky;
                if ((uint)iy >= (uint)Hin) continue;        // padding holds the zero point: contributes 0
                for (int kx = 0; kx < Kw; kx++)
                {
                    int ix = ox * Sw - PadLeft + kx;
                    if ((uint)ix >= (uint)Win) continue;
                    for (int ci = 0; ci < Cin; ci++)
                        acc += W[((co * Kh + ky) * Kw + kx) * Cin + ci] * (x[(iy * Win + ix) * Cin + ci] - ZpIn);
                }
            }
            y[(oy * Wout + ox) * Cout + co] = (sbyte)Requant.Apply(acc, Mult[co], RShift[co], ZpOut, Lo, Hi);
        }
    }

    private void RefDepthwise(ReadOnlySpan<sbyte> x, Span<sbyte> y)
    {
        int c = Cout;
        for (int oy = 0; oy < Hout; oy++)
        for (int ox = 0; ox < Wout; ox++)
        for (int ch = 0; ch < c; ch++)
        {
            int acc = Bias[ch];
            for (int ky = 0; ky < Kh; ky++)
            {
                int iy = oy * Sh - PadTop + ky;
                if ((uint)iy >= (uint)Hin) continue;
                for (int kx = 0; kx < Kw; kx++)
                {
                    int ix = ox * Sw - PadLeft + kx;
                    if ((uint)ix >= (uint)Win) continue;
                    acc += W[(ky * Kw + kx) * c + ch] * (x[(iy * Win + ix) * c + ch] - ZpIn);
                }
            }
            y[(oy * Wout + ox) * c + ch] = (sbyte)Requant.Apply(acc, Mult[ch], RShift[ch], ZpOut, Lo, Hi);
        }
    }

    /// <summary>Pointwise (rows = positions) and Dense (one row over the flat input).</summary>
    private void RefGemm(ReadOnlySpan<sbyte> x, Span<sbyte> y, int rows)
    {
        for (int r = 0; r < rows; r++)
        for (int co = 0; co < Cout; co++)
        {
            int acc = Bias[co];
            for (int ci = 0; ci < Cin; ci++)
                acc += W[co * Cin + ci] * (x[r * Cin + ci] - ZpIn);
            y[r * Cout + co] = (sbyte)Requant.Apply(acc, Mult[co], RShift[co], ZpOut, Lo, Hi);
        }
    }
}
