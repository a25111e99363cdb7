namespace QanaEdge.Model.Graph;

/// <summary>
/// One tensor of the graph, batch size 1, layout HWC (flat tensors use H = W = 1).
/// Affine quantization per tensor: real = Scale · (q − ZeroPoint), as in gemmlowp, so real 0 is exact.
/// </summary>
public sealed class TensorSpec
{
    public required string Name { get; init; }
    public required int Height { get; init; }
    public required int Width { get; init; }
    public required int Channels { get; init; }
    public DataType Type { get; init; } = DataType.Int8;
    public required double Scale { get; init; }
    public required int ZeroPoint { get; init; }

    public int Length => Height * Width * Channels;

    public override string ToString() => $"{Name} [{Height}x{Width}x{Channels}] s={Scale:G6} zp={ZeroPoint}";
}
