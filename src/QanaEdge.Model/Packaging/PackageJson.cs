using System.Text.Json;
using System.Text.Json.Serialization;

namespace QanaEdge.Model.Packaging;

// The JSON part of a package: the manifest as it is, the graph as a document whose large arrays
// (weights, biases, tables) are references into the blob. Every graph field is nullable here so that
// a missing field becomes a clear "missing field" error in PackageReader rather than a serializer message.

internal sealed class PackageDocument
{
    public ModelManifest? Manifest { get; set; }
    public GraphDocument? Graph { get; set; }
}

internal sealed class GraphDocument
{
    public int? Input { get; set; }
    public int? Logits { get; set; }
    public int? Output { get; set; }
    public TensorDocument?[]? Tensors { get; set; }
    public NodeDocument?[]? Nodes { get; set; }
}

internal sealed class TensorDocument
{
    public string? Name { get; set; }
    public int? Height { get; set; }
    public int? Width { get; set; }
    public int? Channels { get; set; }
    /// <summary>"int8" or "int32".</summary>
    public string? Type { get; set; }
    public double? Scale { get; set; }
    public int? ZeroPoint { get; set; }
}

internal sealed class NodeDocument
{
    public string? Name { get; set; }
    /// <summary>Operator name, see <see cref="OpNames"/>.</summary>
    public string? Op { get; set; }
    public int[]? Inputs { get; set; }
    public int? Output { get; set; }
    /// <summary>[Kh, Kw], windowed operators only.</summary>
    public int[]? Kernel { get; set; }
    /// <summary>[Sh, Sw], windowed operators only.</summary>
    public int[]? Stride { get; set; }
    /// <summary>"same" or "valid", windowed operators only.</summary>
    public string? Padding { get; set; }
    public BlobRef? Weights { get; set; }
    public double[]? WeightScales { get; set; }
    public BlobRef? Bias { get; set; }
    public int? ClampMin { get; set; }
    public int? ClampMax { get; set; }
    public BlobRef? Table { get; set; }
    public int? TimeSteps { get; set; }
    public int[]? Thresholds { get; set; }
    public string? Reparameterisation { get; set; }
    public string? KernelName { get; set; }
}

/// <summary>A typed array in the blob: byte offset from the blob's start, length in elements.</summary>
internal sealed class BlobRef
{
    public long? Offset { get; set; }
    public long? Length { get; set; }
}

/// <summary>sbyte[] (golden vectors) as base64 rather than a JSON array of numbers: 4/3 bytes per value
/// instead of up to 5.</summary>
internal sealed class SByteArrayBase64Converter : JsonConverter<sbyte[]>
{
    public override sbyte[]? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (reader.TokenType == JsonTokenType.Null) return null;
        if (reader.TokenType != JsonTokenType.String) throw new JsonException("expected a base64 string");
        if (!reader.TryGetBytesFromBase64(out byte[]? bytes)) throw new JsonException("invalid base64");
        var result = new sbyte[bytes.Length];
        Buffer.BlockCopy(bytes, 0, result, 0, bytes.Length);
        return result;
    }

    public override void Write(Utf8JsonWriter writer, sbyte[] value, JsonSerializerOptions options)
    {
        var bytes = new byte[value.Length];
        Buffer.BlockCopy(value, 0, bytes, 0, value.Length);
        writer.WriteBase64StringValue(bytes);
    }
}

[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    RespectNullableAnnotations = true,
    UseStringEnumConverter = true,
    Converters = [typeof(SByteArrayBase64Converter)])]
[JsonSerializable(typeof(PackageDocument))]
internal sealed partial class PackageJsonContext : JsonSerializerContext;
