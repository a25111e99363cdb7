using QanaEdge.Model.Graph;

namespace QanaEdge.Model.Packaging;

/// <summary>The names operators, data types and paddings have in package JSON (stable; never rename).</summary>
public static class OpNames
{
    public static string Of(OpKind kind) => kind switch
    {
        OpKind.Conv2D => "conv2d",
        OpKind.DepthwiseConv2D => "depthwiseConv2d",
        OpKind.PointwiseConv2D => "pointwiseConv2d",
        OpKind.Concat => "concat",
        OpKind.Add => "add",
        OpKind.GlobalAvgPool => "globalAvgPool",
        OpKind.Dense => "dense",
        OpKind.Sigmoid => "sigmoid",
        OpKind.Mul => "mul",
        OpKind.Clamp => "clamp",
        OpKind.Reshape => "reshape",
        OpKind.SpikingReadout => "spikingReadout",
        _ => throw new PackageFormatException($"unknown operator {(int)kind}"),
    };

    public static bool TryParse(string? name, out OpKind kind)
    {
        foreach (OpKind k in Enum.GetValues<OpKind>())
        {
            if (string.Equals(Of(k), name, StringComparison.Ordinal)) { kind = k; return true; }
        }
        kind = default;
        return false;
    }

    internal static string Of(DataType type) => type == DataType.Int32 ? "int32" : "int8";

    internal static string Of(Padding padding) => padding == Padding.Valid ? "valid" : "same";
}
