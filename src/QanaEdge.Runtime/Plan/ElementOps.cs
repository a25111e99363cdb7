using QanaEdge.Model.Graph;
using QanaEdge.Runtime.Kernels;

namespace QanaEdge.Runtime.Plan;

/// <summary>
/// Add, aligned in fixed point as in gemmlowp/TFLite: with L = 20, s_max = max(s_a, s_b),
///   a' = R((q_a − z_a)·2^L, m_a),  b' = R((q_b − z_b)·2^L, m_b),   m_a = s_a/(2·s_max), m_b = s_b/(2·s_max)
///   q  = clamp(z_o + R(a' + b', m_o), lo, hi),                      m_o = 2·s_max/(2^L·s_o)
/// where R(v, m) = RoundHalfAwayFromZero(v·M/2^n) is the shared rule with m's Q31 form. The 2^L headroom keeps
/// the input rescale almost lossless; |q − z| ≤ 255 so (q − z)·2^20 &lt; 2^28 and a' + b' &lt; 2^28 fit int32.
/// Training mirrors exactly these three roundings (see docs/engine.md).
/// </summary>
internal sealed class AddOp : Op
{
    public const int LeftShift = 20;
    public required QuantizedMultiplier MA { get; init; }
    public required QuantizedMultiplier MB { get; init; }
    public required QuantizedMultiplier MO { get; init; }
    public override string KernelName => Optimized ? "opt-add-table64k" : "ref-add-fixedpoint";

    /// <summary>The result depends only on (q_a, q_b): 65,536 outputs precomputed with the reference formula.</summary>
    public sbyte[] Table { get; } = new sbyte[65536];

    public void BuildTable()
    {
        for (int a = -128; a < 128; a++)
        for (int b = -128; b < 128; b++)
            Table[((a + 128) << 8) | (b + 128)] = (sbyte)Compute(a, b);
    }

    public int Compute(int qa, int qb)
    {
        long va = Requant.Scale((qa - Inputs[0].ZeroPoint) << LeftShift, MA.Multiplier, MA.RightShift);
        long vb = Requant.Scale((qb - Inputs[1].ZeroPoint) << LeftShift, MB.Multiplier, MB.RightShift);
        return Requant.Apply((int)(va + vb), MO, Output.ZeroPoint, Lo, Hi);
    }

    public override void EvalReference(ExecState s)
    {
        ReadOnlySpan<sbyte> a = s.Tensor(InputIndices[0]), b = s.Tensor(InputIndices[1]);
        Span<sbyte> y = s.Tensor(OutputIndex);
        for (int i = 0; i < y.Length; i++) y[i] = (sbyte)Compute(a[i], b[i]);
    }

    public override void EvalOptimized(ExecState s) => OptimizedKernels.Add(this, s);
}

/// <summary>Concat along channels; each input is rescaled to the output quantization: z_o + R(q − z_i, s_i/s_o).</summary>
internal sealed class ConcatOp : Op
{
    public required QuantizedMultiplier[] M { get; init; }
    /// <summary>True for inputs already in the output's quantization: their bytes are copied unchanged.</summary>
    public required bool[] Identity { get; init; }
    public override string KernelName => Optimized ? "opt-concat-lut" : "ref-concat";
    public override int ScratchBytes => Inputs.Sum(t => t.Length + 64);

    /// <summary>Per input, the 256 possible outputs (index q + 128), from the reference formula.</summary>
    public sbyte[][] Tables { get; private set; } = [];

    public void BuildTables()
    {
        Tables = new sbyte[Inputs.Length][];
        for (int k = 0; k < Inputs.Length; k++)
        {
            Tables[k] = new sbyte[256];
            for (int q = -128; q < 128; q++)
                Tables[k][q + 128] = (sbyte)Requant.Apply(q - Inputs[k].ZeroPoint, M[k], Output.ZeroPoint, Lo, Hi);
        }
    }

    public override void EvalReference(ExecState s)
    {
        Span<sbyte> y = s.Tensor(OutputIndex);
        int positions = Output.Height * Output.Width, cOut = Output.Channels, c0 = 0;
        for (int k = 0; k < Inputs.Length; k++)
        {
            ReadOnlySpan<sbyte> x = s.Tensor(InputIndices[k]);
            int c = Inputs[k].Channels, z = Inputs[k].ZeroPoint;
            for (int p = 0; p < positions; p++)
            for (int ch = 0; ch < c; ch++)
                y[p * cOut + c0 + ch] = (sbyte)Requant.Apply(x[p * c + ch] - z, M[k], Output.ZeroPoint, Lo, Hi);
            c0 += c;
        }
    }

    public override void EvalOptimized(ExecState s) => OptimizedKernels.Concat(this, s);
}

/// <summary>Global average pool: acc_c = Σ_hw (q − z_in), q = z_o + R(acc_c, s_in/(H·W·s_o)).</summary>
internal sealed class GapOp : Op
{
    public override (int Shorts, int Ints) Scratch => (0, Inputs[0].Channels);
    public required QuantizedMultiplier M { get; init; }
    public override string KernelName => Optimized ? "opt-gap-sum" : "ref-gap-sum";

    // Overflow: |acc| ≤ H·W·255, below 2^31 for any image under 8 million pixels (checked at prepare).
    public override void EvalReference(ExecState s)
    {
        ReadOnlySpan<sbyte> x = s.Tensor(InputIndices[0]);
        Span<sbyte> y = s.Tensor(OutputIndex);
        int c = Inputs[0].Channels, positions = Inputs[0].Height * Inputs[0].Width, z = Inputs[0].ZeroPoint;
        for (int ch = 0; ch < c; ch++)
        {
            int acc = 0;
            for (int p = 0; p < positions; p++) acc += x[p * c + ch] - z;
            y[ch] = (sbyte)Requant.Apply(acc, M, Output.ZeroPoint, Lo, Hi);
        }
    }

    public override void EvalOptimized(ExecState s) => OptimizedKernels.Gap(this, s);
}

/// <summary>Sigmoid through its 256-entry table (index q + 128), then the fused clamp.</summary>
internal sealed class SigmoidOp : Op
{
    public required sbyte[] Table { get; init; }
    public override string KernelName => Optimized ? "opt-lut256" : "ref-lut256";

    /// <summary>The table with the fused clamp already applied.</summary>
    public sbyte[] ClampedTable { get; } = new sbyte[256];

    public void BuildTable()
    {
        for (int i = 0; i < 256; i++) ClampedTable[i] = (sbyte)Math.Clamp(Table[i], Lo, Hi);
    }

    public override void EvalReference(ExecState s)
    {
        ReadOnlySpan<sbyte> x = s.Tensor(InputIndices[0]);
        Span<sbyte> y = s.Tensor(OutputIndex);
        for (int i = 0; i < y.Length; i++) y[i] = (sbyte)Math.Clamp(Table[x[i] + 128], Lo, Hi);
    }

    public override void EvalOptimized(ExecState s) => OptimizedKernels.Sigmoid(this, s);
}

/// <summary>Broadcast shape of a Mul gate.</summary>
internal enum GateShape { Channel, Spatial, Full }

/// <summary>Gate: y = z_o + R((x − z_x)·(g − z_g), s_x·s_g/s_o); g broadcast from [1,1,C], [H,W,1] or [H,W,C].</summary>
internal sealed class MulOp : Op
{
    public required GateShape Shape { get; init; }
    public required QuantizedMultiplier M { get; init; }
    public override string KernelName => (Optimized ? "opt-gate-table64k-" : "ref-gate-") + Shape.ToString().ToLowerInvariant();

    /// <summary>Output for every (q_x, q_g) pair, index ((q_x + 128) &lt;&lt; 8) | (q_g + 128), from the reference formula.</summary>
    public sbyte[] Table { get; } = new sbyte[65536];

    public void BuildTable()
    {
        for (int a = -128; a < 128; a++)
        for (int g = -128; g < 128; g++)
            Table[((a + 128) << 8) | (g + 128)] = (sbyte)Requant.Apply(
                (a - Inputs[0].ZeroPoint) * (g - Inputs[1].ZeroPoint), M, Output.ZeroPoint, Lo, Hi);
    }

    // Overflow: |(x − z_x)·(g − z_g)| ≤ 255² — no risk.
    public override void EvalReference(ExecState s)
    {
        ReadOnlySpan<sbyte> x = s.Tensor(InputIndices[0]), g = s.Tensor(InputIndices[1]);
        Span<sbyte> y = s.Tensor(OutputIndex);
        int c = Output.Channels, positions = Output.Height * Output.Width;
        int zx = Inputs[0].ZeroPoint, zg = Inputs[1].ZeroPoint;
        for (int p = 0; p < positions; p++)
        for (int ch = 0; ch < c; ch++)
        {
            int gi = Shape switch { GateShape.Channel => ch, GateShape.Spatial => p, _ => p * c + ch };
            int acc = (x[p * c + ch] - zx) * (g[gi] - zg);
            y[p * c + ch] = (sbyte)Requant.Apply(acc, M, Output.ZeroPoint, Lo, Hi);
        }
    }

    public override void EvalOptimized(ExecState s) => OptimizedKernels.Mul(this, s);
}

/// <summary>Clamp and Reshape: rescale to the output quantization (a plain copy when it is the same), then clamp.</summary>
internal sealed class RescaleOp : Op
{
    public required QuantizedMultiplier M { get; init; }
    public required bool Identity { get; init; }
    public override string KernelName => (Optimized ? "opt-" : "ref-") + (Node.Kind == OpKind.Reshape ? "reshape" : "clamp");

    /// <summary>The 256 possible outputs (index q + 128), from the reference formula.</summary>
    public sbyte[] Table { get; } = new sbyte[256];

    public void BuildTable()
    {
        for (int q = -128; q < 128; q++)
            Table[q + 128] = (sbyte)Requant.Apply(q - Inputs[0].ZeroPoint, M, Output.ZeroPoint, Lo, Hi);
    }

    public override void EvalReference(ExecState s)
    {
        ReadOnlySpan<sbyte> x = s.Tensor(InputIndices[0]);
        Span<sbyte> y = s.Tensor(OutputIndex);
        int z = Inputs[0].ZeroPoint;
        for (int i = 0; i < y.Length; i++) y[i] = (sbyte)Requant.Apply(x[i] - z, M, Output.ZeroPoint, Lo, Hi);
    }

    public override void EvalOptimized(ExecState s) => OptimizedKernels.Rescale(this, s);
}

/// <summary>
/// Spiking readout: d_k = q_k + 128, IF neurons with subtractive reset over T steps, counts c_k.
/// Reference = the stepped simulation; optimized = the event-driven closed form min(T, ⌊T·d_k/θ_k⌋).
/// </summary>
internal sealed class ReadoutOp : Op
{
    public required int TimeSteps { get; init; }
    public required int[] Thresholds { get; init; }
    public override string KernelName => Optimized ? "opt-if-closed-form" : "ref-if-stepped";

    public override void EvalReference(ExecState s)
    {
        ReadOnlySpan<sbyte> x = s.Tensor(InputIndices[0]);
        SpikingReadout.Simulate(x, Thresholds, TimeSteps, s.Counts);
    }

    public override void EvalOptimized(ExecState s)
    {
        ReadOnlySpan<sbyte> x = s.Tensor(InputIndices[0]);
        SpikingReadout.ClosedForm(x, Thresholds, TimeSteps, s.Counts);
    }
}
