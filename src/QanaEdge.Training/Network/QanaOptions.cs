namespace QanaEdge.Training.Network;

/// <summary>
/// The QANA network's shape and the ablation switches (DESIGN.md rows: baseline, +Ghost, +ECA, +SE,
/// +quant head; +SMOTE and +incremental learning are training-procedure switches in <see cref="TrainOptions"/>).
/// </summary>
public sealed record QanaOptions
{
    public int InputSize { get; init; } = 64;
    public int NumClasses { get; init; } = 7;
    public int StemChannels { get; init; } = 24;
    /// <summary>(Cout, stride) of the four blocks.</summary>
    public (int Channels, int Stride)[] Blocks { get; init; } = [(48, 1), (64, 2), (96, 2), (128, 2)];
    /// <summary>Ghost module (primary separable conv to Cout/2 + cheap depthwise ghost features); off: separable conv to Cout.</summary>
    public bool Ghost { get; init; } = true;
    /// <summary>Spatially-aware ECA gate in every block.</summary>
    public bool Eca { get; init; } = true;
    /// <summary>Squeeze-and-excitation gate before the head.</summary>
    public bool Se { get; init; } = true;
    /// <summary>Fake-quantize the head during quantization-aware training (off: the head is quantized after training only).</summary>
    public bool QuantHead { get; init; } = true;
    /// <summary>
    /// Global-average-pool the final feature map before the linear head (128 inputs) instead of flattening it
    /// (H·W·128 inputs): the head then cannot tie a class to a position, which the zoomed and transposed
    /// training views make arbitrary, and it has 64 times fewer weights to fit from a few thousand images.
    /// </summary>
    public bool PooledHead { get; init; }
    public int SeReduction { get; init; } = 8;
    public float DropoutRate { get; init; } = 0.1f;

    /// <summary>The full QANA (all switches on).</summary>
    public static QanaOptions Full => new();

    /// <summary>The ablation baseline: separable blocks with residuals, no Ghost/ECA/SE, head quantized post hoc.</summary>
    public static QanaOptions Baseline => new() { Ghost = false, Eca = false, Se = false, QuantHead = false };

    public void Validate()
    {
        if (InputSize < 16 || InputSize > 128 || InputSize % 8 != 0)
            throw new ArgumentException($"input size {InputSize} must be a multiple of 8 in [16, 128]");
        if (NumClasses < 2) throw new ArgumentException("at least two classes");
        foreach (var (c, s) in Blocks)
            if (c % 2 != 0 || s is < 1 or > 2) throw new ArgumentException($"block ({c},{s}) invalid");
    }
}
