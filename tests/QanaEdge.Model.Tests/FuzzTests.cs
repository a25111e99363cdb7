using System.Buffers.Binary;
using System.Text;
using System.Text.Json.Nodes;
using QanaEdge.Model.Packaging;

namespace QanaEdge.Model.Tests;

/// <summary>
/// Mutation fuzzing of the loader with fixed seeds: every mutated or truncated package either loads or is
/// refused with <see cref="PackageFormatException"/>; nothing else may escape. Most mutations also get
/// their lengths and checksum repaired, or the checksum alone would refuse them all and the parser behind
/// it would never be reached. A package that loads must write back and load again to the same bytes.
/// </summary>
public class FuzzTests
{
    private static readonly byte[][] Seeds =
    [
        PackageWriter.ToBytes(SmallPackages.Build(1)),
        PackageWriter.ToBytes(SmallPackages.Build(5, QuantizationProfile.Akd1000)),
        PackageWriter.ToBytes(SmallPackages.ReadoutUpdate()),
    ];

    public enum Mode { BitFlips, ByteChanges, Splice, LengthFields, Truncation, JsonValues, JsonStructure }

    [Theory]
    [InlineData(Mode.BitFlips, 101, 1500)]
    [InlineData(Mode.ByteChanges, 202, 1500)]
    [InlineData(Mode.Splice, 303, 800)]
    [InlineData(Mode.LengthFields, 404, 800)]
    [InlineData(Mode.Truncation, 505, 800)]
    [InlineData(Mode.JsonValues, 606, 800)]
    [InlineData(Mode.JsonStructure, 707, 500)]
    public void MutatedPackages_LoadOrThrowPackageFormatException(Mode mode, int seed, int iterations)
    {
        var rng = new Random(seed);
        int loaded = 0, refused = 0;
        for (int i = 0; i < iterations; i++)
        {
            byte[] source = Seeds[rng.Next(Seeds.Length)];
            byte[] mutated = Mutate(mode, source, rng);
            ModelPackage? package;
            try
            {
                package = PackageReader.Load(mutated);
            }
            catch (PackageFormatException e)
            {
                Assert.False(string.IsNullOrWhiteSpace(e.Message));
                Assert.DoesNotContain('\n', e.Message);
                refused++;
                continue;
            }
            catch (Exception e)
            {
                Assert.Fail($"{mode} seed {seed} iteration {i}: {e.GetType().Name} escaped the loader: {e.Message}");
                return;
            }
            loaded++;
            byte[] rewritten = PackageWriter.ToBytes(package);
            Assert.Equal(rewritten, PackageWriter.ToBytes(PackageReader.Load(rewritten)));
        }
        // The mutations must reach the refusals (otherwise the test proves nothing); most are refused.
        Assert.True(refused > iterations / 4, $"{mode}: only {refused} of {iterations} mutations were refused");
        Assert.Equal(iterations, loaded + refused);
    }

    private static byte[] Mutate(Mode mode, byte[] source, Random rng)
    {
        byte[] b = (byte[])source.Clone();
        bool repair = rng.Next(4) != 0;
        switch (mode)
        {
            case Mode.BitFlips:
                for (int k = rng.Next(1, 9); k > 0; k--)
                {
                    int at = rng.Next(b.Length);
                    b[at] ^= (byte)(1 << rng.Next(8));
                }
                break;
            case Mode.ByteChanges:
                for (int k = rng.Next(1, 5); k > 0; k--)
                    b[rng.Next(b.Length)] = Interesting(rng);
                break;
            case Mode.Splice:
            {
                byte[] other = Seeds[rng.Next(Seeds.Length)];
                int len = rng.Next(1, 200);
                int from = rng.Next(Math.Max(1, other.Length - len));
                int to = rng.Next(Math.Max(1, b.Length - len));
                len = Math.Min(len, Math.Min(other.Length - from, b.Length - to));
                if (rng.Next(2) == 0)
                {
                    Array.Copy(other, from, b, to, len);
                }
                else
                {
                    // Insert, so that every later offset moves.
                    b = [.. b.AsSpan(0, to), .. other.AsSpan(from, len), .. b.AsSpan(to)];
                }
                break;
            }
            case Mode.LengthFields:
            {
                int field = rng.Next(2) == 0 ? 16 : 20;
                uint old = BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(field));
                uint value = rng.Next(5) switch
                {
                    0 => (uint)rng.Next(),
                    1 => old + (uint)rng.Next(-64, 65),
                    2 => 0,
                    3 => uint.MaxValue - (uint)rng.Next(16),
                    _ => old ^ (1u << rng.Next(32)),
                };
                BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(field), value);
                break;
            }
            case Mode.Truncation:
                b = b.AsSpan(0, rng.Next(b.Length)).ToArray();
                repair = false;
                break;
            case Mode.JsonValues:
                return EditJsonValues(b, rng);
            case Mode.JsonStructure:
                return EditJsonStructure(b, rng);
        }
        if (repair && b.Length >= 56) PackageBytes.FixChecksum(b);
        return b;
    }

    private static byte Interesting(Random rng) => rng.Next(6) switch
    {
        0 => 0,
        1 => 0xFF,
        2 => 0x7F,
        3 => 0x80,
        4 => (byte)'"',
        _ => (byte)rng.Next(256),
    };

    /// <summary>Replaces one number or string of the JSON with an awkward value, then repacks.</summary>
    private static byte[] EditJsonValues(byte[] package, Random rng)
    {
        var (json, blob) = PackageBytes.Split(package);
        JsonNode root = JsonNode.Parse(json)!;
        var leaves = new List<JsonValue>();
        Collect(root, leaves);
        for (int k = rng.Next(1, 3); k > 0; k--)
        {
            JsonValue leaf = leaves[rng.Next(leaves.Count)];
            JsonNode? replacement = rng.Next(12) switch
            {
                0 => JsonValue.Create(0),
                1 => JsonValue.Create(-1),
                2 => JsonValue.Create(int.MaxValue),
                3 => JsonValue.Create(int.MinValue),
                4 => JsonValue.Create(long.MaxValue),
                5 => JsonValue.Create(1e300),
                6 => JsonValue.Create(-0.5),
                7 => JsonValue.Create(""),
                8 => JsonValue.Create("x"),
                9 => null,
                10 => JsonValue.Create(rng.Next(-300, 300)),
                _ => JsonValue.Create(true),
            };
            leaf.ReplaceWith(replacement);
        }
        return PackageBytes.Join(Encoding.UTF8.GetBytes(root.ToJsonString()), blob);
    }

    /// <summary>Removes, duplicates or swaps objects and array elements, then repacks.</summary>
    private static byte[] EditJsonStructure(byte[] package, Random rng)
    {
        var (json, blob) = PackageBytes.Split(package);
        JsonNode root = JsonNode.Parse(json)!;
        var containers = new List<JsonNode>();
        CollectContainers(root, containers);
        JsonNode target = containers[rng.Next(containers.Count)];
        if (target is JsonObject obj && obj.Count > 0)
        {
            string key = obj.ElementAt(rng.Next(obj.Count)).Key;
            if (rng.Next(2) == 0) obj.Remove(key);
            else obj[key] = new JsonArray();
        }
        else if (target is JsonArray arr && arr.Count > 0)
        {
            int i = rng.Next(arr.Count), j = rng.Next(arr.Count);
            switch (rng.Next(3))
            {
                case 0: arr.RemoveAt(i); break;
                case 1: arr.Add(arr[i]?.DeepClone()); break;
                default:
                    JsonNode? a = arr[i]?.DeepClone(), c = arr[j]?.DeepClone();
                    arr[i] = c;
                    arr[j] = a;
                    break;
            }
        }
        if (rng.Next(8) == 0) blob = blob.AsSpan(0, rng.Next(blob.Length + 1)).ToArray();
        return PackageBytes.Join(Encoding.UTF8.GetBytes(root.ToJsonString()), blob);
    }

    private static void Collect(JsonNode? node, List<JsonValue> leaves)
    {
        switch (node)
        {
            case JsonObject o: foreach (var (_, v) in o) Collect(v, leaves); break;
            case JsonArray a: foreach (JsonNode? v in a) Collect(v, leaves); break;
            case JsonValue v: leaves.Add(v); break;
        }
    }

    private static void CollectContainers(JsonNode? node, List<JsonNode> containers)
    {
        switch (node)
        {
            case JsonObject o: containers.Add(o); foreach (var (_, v) in o) CollectContainers(v, containers); break;
            case JsonArray a: containers.Add(a); foreach (JsonNode? v in a) CollectContainers(v, containers); break;
        }
    }
}
