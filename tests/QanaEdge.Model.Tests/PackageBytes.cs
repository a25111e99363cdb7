using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using QanaEdge.Model.Packaging;

namespace QanaEdge.Model.Tests;

/// <summary>Takes package files apart and puts them back together (fixing lengths and checksum), so that
/// tests can reach the validation behind the checksum.</summary>
public static class PackageBytes
{
    public static (byte[] Json, byte[] Blob) Split(byte[] package)
    {
        int j = (int)BinaryPrimitives.ReadUInt32LittleEndian(package.AsSpan(16));
        int b = (int)BinaryPrimitives.ReadUInt32LittleEndian(package.AsSpan(20));
        return (package.AsSpan(24, j).ToArray(), package.AsSpan(24 + j, b).ToArray());
    }

    public static byte[] Join(byte[] json, byte[] blob, uint version = 1, uint flags = 0)
    {
        var bytes = new byte[24 + json.Length + blob.Length + 32];
        PackageFormat.Magic.CopyTo(bytes);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(8), version);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(12), flags);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(16), (uint)json.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(20), (uint)blob.Length);
        json.CopyTo(bytes, 24);
        blob.CopyTo(bytes, 24 + json.Length);
        FixChecksum(bytes);
        return bytes;
    }

    /// <summary>Recomputes the checksum of a package whose header lengths are plausible.</summary>
    public static void FixChecksum(byte[] bytes)
    {
        long j = BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(16));
        long b = BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(20));
        long content = 24 + j + b;
        if (content + 32 > bytes.Length) return;
        SHA256.HashData(bytes.AsSpan(0, (int)content), bytes.AsSpan((int)content, 32));
    }

    public static byte[] EditJson(byte[] package, Action<JsonObject> edit)
    {
        var (json, blob) = Split(package);
        var root = JsonNode.Parse(json)!.AsObject();
        edit(root);
        return Join(Encoding.UTF8.GetBytes(root.ToJsonString()), blob);
    }

    public static JsonObject Node(JsonObject root, string name) =>
        root["graph"]!["nodes"]!.AsArray().Select(n => n!.AsObject()).Single(n => (string?)n["name"] == name);

    public static JsonObject Tensor(JsonObject root, string name) =>
        root["graph"]!["tensors"]!.AsArray().Select(n => n!.AsObject()).Single(n => (string?)n["name"] == name);
}
