namespace QanaEdge.Model.Graph;

/// <summary>
/// One operator of the integer graph. Which fields matter depends on <see cref="Kind"/>; the package
/// validator checks that each kind has exactly what it needs (see docs/model-format.md).
/// Weights are symmetric int8 (zero point 0) with one scale per tensor or per output channel;
/// biases are int32 in units of input scale × weight scale.
/// </summary>
public sealed class Node
{
    public required string Name { get; init; }
    public required OpKind Kind { get; init; }
    /// <summary>Indices into <see cref="ModelGraph.Tensors"/>.</summary>
    public required int[] Inputs { get; init; }
    public required int Output { get; init; }

    // Windowed operators (Conv2D, DepthwiseConv2D).
    public int KernelHeight { get; init; } = 1;
    public int KernelWidth { get; init; } = 1;
    public int StrideHeight { get; init; } = 1;
    public int StrideWidth { get; init; } = 1;
    public Padding Padding { get; init; } = Padding.Same;

    // Parameterised operators (Conv2D, DepthwiseConv2D, PointwiseConv2D, Dense).
    public sbyte[]? Weights { get; init; }
    /// <summary>Length 1 (per tensor) or the output channel count (per channel).</summary>
    public double[]? WeightScales { get; init; }
    public int[]? Bias { get; init; }

    /// <summary>Fused output clamp in the quantized output domain (ReLU6 ⇒ [q(0), q(6)]); int8 range when none.</summary>
    public int ClampMin { get; init; } = sbyte.MinValue;
    public int ClampMax { get; init; } = sbyte.MaxValue;

    /// <summary>Sigmoid lookup table: 256 entries indexed by (q_in + 128).</summary>
    public sbyte[]? Table { get; init; }

    // Spiking readout.
    /// <summary>Readout window T (time steps).</summary>
    public int TimeSteps { get; init; }
    /// <summary>Per-class integrate-and-fire thresholds θ_k, in input quanta (positive).</summary>
    public int[]? Thresholds { get; init; }

    // Provenance for the per-layer conversion table.
    /// <summary>Reparameterisation applied while converting, e.g. "bn-fold", "gap-scale-fold", "none".</summary>
    public string Reparameterisation { get; init; } = "none";
    /// <summary>The kernel the converter chose for this node (e.g. "conv2d-3x3-s2", "dw-3x3", "gemm-pw").</summary>
    public string Kernel { get; init; } = "";
}
