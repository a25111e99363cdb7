using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text.Json;
using QanaEdge.Model.Graph;

namespace QanaEdge.Model.Packaging;

/// <summary>
/// Loads a <c>.qana</c> package and validates every field before anything else sees it: header, lengths,
/// checksum, JSON, blob references, the graph (<see cref="GraphValidator"/>) and the manifest. Any
/// violation, including an unreadable file, is one <see cref="PackageFormatException"/>. Limits
/// (<see cref="PackageLimits"/>) are checked before the allocation they guard. The signature block, when
/// present, is parsed but not verified: that needs a trust store (<see cref="PackageVerifier"/>).
/// </summary>
public static class PackageReader
{
    public static ModelPackage Load(string path) => Load(ReadFile(path));

    /// <summary>
    /// The bytes of a package file, read whole but never past the package limit, also when it reports no size (a
    /// device, a pipe: <see cref="WholeFile.ReadAtMost"/>). Taken at its reported size, <c>/dev/zero</c> made
    /// <see cref="PackageVerifier.Verify(string, TrustStore)"/> read until the runtime's largest array and fail with an
    /// OutOfMemoryException.
    /// </summary>
    /// <exception cref="PackageFormatException">Missing, a folder, unreadable, or larger than the limit.</exception>
    public static byte[] ReadFile(string path)
    {
        // A folder would otherwise be "access denied", which sends the reader to the permissions, and a missing file
        // .NET's "Could not find file" with the full path; both say it as the other path checks do.
        if (ExpectedPath.FileProblem(path) is { } problem) throw new PackageFormatException($"'{path}' {problem}");
        try
        {
            return WholeFile.ReadAtMost(path, PackageLimits.MaxFileBytes, out long size)
                ?? throw new PackageFormatException(size >= 0
                    ? $"'{path}': {size} bytes exceed the package limit of {PackageLimits.MaxFileBytes}"
                    : $"'{path}': more than {PackageLimits.MaxFileBytes} bytes, over the package limit");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            throw new PackageFormatException($"cannot read '{path}': {OneLine(e.Message)}", e);
        }
    }

    public static ModelPackage Load(ReadOnlySpan<byte> bytes) => Load(bytes, ReadLayout(bytes));

    /// <summary>Loads a package whose layout <see cref="ReadLayout"/> has already checked.</summary>
    internal static ModelPackage Load(ReadOnlySpan<byte> bytes, Layout layout)
    {
        ReadOnlySpan<byte> json = bytes.Slice(PackageFormat.HeaderSize, layout.JsonLength);
        ReadOnlySpan<byte> blob = bytes.Slice(PackageFormat.HeaderSize + layout.JsonLength, layout.BlobLength);

        CheckEntryCounts(json);
        PackageDocument? document;
        try
        {
            document = JsonSerializer.Deserialize(json, PackageJsonContext.Default.PackageDocument);
        }
        catch (JsonException e)
        {
            throw new PackageFormatException($"JSON: {OneLine(e.Message)}", e);
        }
        if (document is null) throw new PackageFormatException("JSON: empty document");
        ModelManifest manifest = document.Manifest ?? throw new PackageFormatException("JSON: manifest missing");
        ModelGraph graph = ReadGraph(document.Graph ?? throw new PackageFormatException("JSON: graph missing"), blob);

        var package = new ModelPackage
        {
            Manifest = manifest,
            Graph = graph,
            Signature = layout.Signature,
            ContentSha256 = Convert.ToHexStringLower(bytes.Slice(layout.ContentLength, PackageFormat.ChecksumSize)),
        };
        PackageValidator.Validate(package);
        return package;
    }

    /// <summary>
    /// The most entries a JSON array or object may hold, by the name of the property it is the value of: what the
    /// validation accepts there. Each name means one thing wherever it appears in the document (the calibration's and
    /// the readout node's <c>thresholds</c> are both one per class). The short arrays whose exact length the reader
    /// or validation checks (<c>kernel</c>, <c>stride</c>, <c>colorGains</c>) are left to those checks: as numbers
    /// they take at most twice their bytes of JSON.
    /// </summary>
    private static readonly (byte[] Name, int Limit)[] EntryLimits =
    [
        ("nodes"u8.ToArray(), PackageLimits.MaxNodes),
        ("tensors"u8.ToArray(), PackageLimits.MaxTensors),
        ("layers"u8.ToArray(), PackageLimits.MaxNodes),
        ("golden"u8.ToArray(), PackageLimits.MaxGoldenVectors),
        ("classes"u8.ToArray(), PackageLimits.MaxClasses),
        ("thresholds"u8.ToArray(), PackageLimits.MaxClasses),
        ("inputs"u8.ToArray(), PackageLimits.MaxNodeInputs),
        ("stepWeights"u8.ToArray(), PackageLimits.MaxTimeSteps),
        ("weightScales"u8.ToArray(), (int)PackageLimits.MaxTensorElements),
        ("metrics"u8.ToArray(), PackageLimits.MaxMapEntries),
        ("provenance"u8.ToArray(), PackageLimits.MaxMapEntries),
    ];

    /// <summary>The deepest nesting the reader and the deserializer accept (System.Text.Json's default).</summary>
    private const int MaxDepth = 64;

    /// <summary>
    /// Refuses a JSON array or object holding more entries than <see cref="EntryLimits"/> allows, before the document is
    /// deserialized. The limits used to be checked on the deserialized document only, after its arrays were built: a
    /// 34 MB package of 11 million empty nodes (<c>{},</c>, three bytes each) made the loader allocate 2 GB before the
    /// node limit refused it, where a small board runs out of memory first. The count is taken by a reader that
    /// allocates nothing; a document it cannot read is left to the deserializer, whose message says where.
    /// </summary>
    private static void CheckEntryCounts(ReadOnlySpan<byte> json)
    {
        var reader = new Utf8JsonReader(json, new JsonReaderOptions { MaxDepth = MaxDepth });
        Span<int> entries = stackalloc int[MaxDepth + 1];
        Span<int> limitOf = stackalloc int[MaxDepth + 1];       // index into EntryLimits, −1: no limit
        Span<bool> isArray = stackalloc bool[MaxDepth + 1];
        int depth = -1, named = -1;
        try
        {
            while (reader.Read())
            {
                JsonTokenType token = reader.TokenType;
                if (token is JsonTokenType.EndObject or JsonTokenType.EndArray)
                {
                    depth--;
                    continue;
                }
                if (token == JsonTokenType.PropertyName)
                {
                    Count(entries, limitOf, depth);
                    named = -1;
                    for (int i = 0; i < EntryLimits.Length; i++)
                        if (reader.ValueTextEquals(EntryLimits[i].Name)) { named = i; break; }
                    continue;
                }
                if (depth >= 0 && isArray[depth]) Count(entries, limitOf, depth);
                if (token is JsonTokenType.StartObject or JsonTokenType.StartArray)
                {
                    depth++;
                    entries[depth] = 0;
                    limitOf[depth] = named;
                    isArray[depth] = token == JsonTokenType.StartArray;
                }
                named = -1;
            }
        }
        catch (JsonException)
        {
            // Not well-formed: the deserializer refuses it with the position.
        }
    }

    private static void Count(Span<int> entries, Span<int> limitOf, int depth)
    {
        if (depth < 0 || limitOf[depth] < 0) return;
        var (name, limit) = EntryLimits[limitOf[depth]];
        if (++entries[depth] > limit)
            throw new PackageFormatException($"JSON: '{System.Text.Encoding.UTF8.GetString(name)}' holds more than {limit} entries, the limit (refused before it is read)");
    }

    /// <summary>Where the parts of a package lie, after header, length and checksum checks.</summary>
    internal readonly record struct Layout(int JsonLength, int BlobLength, int ContentLength, PackageSignature? Signature)
    {
        /// <summary>Header, JSON, blob and checksum: the bytes a signature covers.</summary>
        public int SignedLength => ContentLength + PackageFormat.ChecksumSize;
    }

    internal static Layout ReadLayout(ReadOnlySpan<byte> bytes)
    {
        const int minimum = PackageFormat.HeaderSize + PackageFormat.ChecksumSize;
        // Magic first: a file that is not a package at all should say so, whatever its length.
        if (bytes.Length >= PackageFormat.Magic.Length && !bytes[..8].SequenceEqual(PackageFormat.Magic))
            throw new PackageFormatException("not a QanaEdge package (bad magic)");
        if (bytes.Length < minimum)
            throw new PackageFormatException($"truncated: {bytes.Length} bytes, a package has at least {minimum}");
        if (bytes.Length > PackageLimits.MaxFileBytes)
            throw new PackageFormatException($"{bytes.Length} bytes exceed the package limit of {PackageLimits.MaxFileBytes}");
        if (!bytes[..8].SequenceEqual(PackageFormat.Magic))
            throw new PackageFormatException("not a QanaEdge package (bad magic)");
        uint version = BinaryPrimitives.ReadUInt32LittleEndian(bytes[8..]);
        if (version != PackageFormat.Version)
            throw new PackageFormatException($"format version {version} is not supported (this reader reads version {PackageFormat.Version})");
        uint flags = BinaryPrimitives.ReadUInt32LittleEndian(bytes[12..]);
        if (flags != 0) throw new PackageFormatException($"header flags 0x{flags:x8} are reserved and must be 0");
        uint jsonLength = BinaryPrimitives.ReadUInt32LittleEndian(bytes[16..]);
        uint blobLength = BinaryPrimitives.ReadUInt32LittleEndian(bytes[20..]);
        if (jsonLength < 2 || jsonLength > PackageLimits.MaxJsonBytes)
            throw new PackageFormatException($"header: JSON length {jsonLength} outside [2, {PackageLimits.MaxJsonBytes}]");
        if (blobLength > PackageLimits.MaxBlobBytes)
            throw new PackageFormatException($"header: blob length {blobLength} exceeds the limit of {PackageLimits.MaxBlobBytes}");
        long contentLength = PackageFormat.HeaderSize + (long)jsonLength + blobLength;
        long signedLength = contentLength + PackageFormat.ChecksumSize;
        if (signedLength > bytes.Length)
            throw new PackageFormatException($"truncated: header announces {signedLength} bytes up to the checksum, the package has {bytes.Length}");

        Span<byte> hash = stackalloc byte[PackageFormat.ChecksumSize];
        SHA256.HashData(bytes[..(int)contentLength], hash);
        if (!hash.SequenceEqual(bytes.Slice((int)contentLength, PackageFormat.ChecksumSize)))
            throw new PackageFormatException("checksum mismatch: the package is corrupt");

        PackageSignature? signature = null;
        long trailing = bytes.Length - signedLength;
        if (trailing != 0)
        {
            if (trailing != PackageFormat.SignatureBlockSize)
                throw new PackageFormatException($"{trailing} unexpected bytes after the checksum (a signature block has {PackageFormat.SignatureBlockSize})");
            signature = ReadSignature(bytes[(int)signedLength..]);
        }
        return new Layout((int)jsonLength, (int)blobLength, (int)contentLength, signature);
    }

    private static PackageSignature ReadSignature(ReadOnlySpan<byte> block)
    {
        if (!block[..4].SequenceEqual(PackageFormat.SignatureMagic))
            throw new PackageFormatException("signature block: bad magic");
        uint version = BinaryPrimitives.ReadUInt32LittleEndian(block[4..]);
        if (version != PackageFormat.SignatureVersion)
            throw new PackageFormatException($"signature block: version {version} is not supported");
        uint algorithm = BinaryPrimitives.ReadUInt32LittleEndian(block[8..]);
        if (algorithm != PackageFormat.SignatureAlgorithmEcdsaP256Sha256)
            throw new PackageFormatException($"signature block: unknown algorithm {algorithm}");
        uint role = BinaryPrimitives.ReadUInt32LittleEndian(block[12..]);
        if (role is not ((uint)SignerRole.Vendor or (uint)SignerRole.Learner))
            throw new PackageFormatException($"signature block: unknown signer role {role}");
        return new PackageSignature
        {
            Role = (SignerRole)role,
            KeyId = block.Slice(16, 32).ToArray(),
            Signature = block.Slice(48, 64).ToArray(),
        };
    }

    private static ModelGraph ReadGraph(GraphDocument g, ReadOnlySpan<byte> blob)
    {
        TensorDocument?[] tensorDocs = g.Tensors ?? throw new PackageFormatException("graph: tensors missing");
        NodeDocument?[] nodeDocs = g.Nodes ?? throw new PackageFormatException("graph: nodes missing");
        if (tensorDocs.Length > PackageLimits.MaxTensors)
            throw new PackageFormatException($"graph: {tensorDocs.Length} tensors exceed the limit of {PackageLimits.MaxTensors}");
        if (nodeDocs.Length > PackageLimits.MaxNodes)
            throw new PackageFormatException($"graph: {nodeDocs.Length} nodes exceed the limit of {PackageLimits.MaxNodes}");

        var tensors = new TensorSpec[tensorDocs.Length];
        for (int i = 0; i < tensors.Length; i++)
        {
            TensorDocument t = tensorDocs[i] ?? throw new PackageFormatException($"tensor {i}: missing");
            string where = $"tensor {i}";
            tensors[i] = new TensorSpec
            {
                Name = t.Name ?? throw Missing(where, "name"),
                Height = t.Height ?? throw Missing(where, "height"),
                Width = t.Width ?? throw Missing(where, "width"),
                Channels = t.Channels ?? throw Missing(where, "channels"),
                Type = t.Type switch
                {
                    null or "int8" => DataType.Int8,
                    "int32" => DataType.Int32,
                    _ => throw new PackageFormatException($"{where}: unknown type '{t.Type}'"),
                },
                Scale = t.Scale ?? throw Missing(where, "scale"),
                ZeroPoint = t.ZeroPoint ?? throw Missing(where, "zeroPoint"),
            };
        }

        // Blob references may overlap, so without a bound a small file could name the same bytes for
        // every node and make the arrays copied out of the blob far larger than the file. Together they
        // may hold at most as many bytes as the blob (the writer never overlaps them), and each is
        // counted before its array is made.
        var budget = new BlobBudget(blob.Length);
        var nodes = new Node[nodeDocs.Length];
        for (int i = 0; i < nodes.Length; i++)
        {
            NodeDocument n = nodeDocs[i] ?? throw new PackageFormatException($"node {i}: missing");
            string where = $"node {i} '{n.Name}'";
            if (!OpNames.TryParse(n.Op ?? throw Missing(where, "op"), out OpKind kind))
                throw new PackageFormatException($"{where}: unknown op '{n.Op}'");
            // The same rule as GraphValidator's, checked here so that data no engine would read is
            // refused before it is copied.
            if (!GraphValidator.TakesParameters(kind) && (n.Weights is not null || n.WeightScales is not null || n.Bias is not null))
                throw new PackageFormatException($"{where}: weights, weight scales or bias on an operator that takes none");
            if (kind != OpKind.Sigmoid && n.Table is not null)
                throw new PackageFormatException($"{where}: lookup table on an operator that takes none");
            int[] kernel = Pair(where, "kernel", n.Kernel);
            int[] stride = Pair(where, "stride", n.Stride);
            nodes[i] = new Node
            {
                Name = n.Name ?? throw Missing($"node {i}", "name"),
                Kind = kind,
                Inputs = n.Inputs ?? throw Missing(where, "inputs"),
                Output = n.Output ?? throw Missing(where, "output"),
                KernelHeight = kernel[0],
                KernelWidth = kernel[1],
                StrideHeight = stride[0],
                StrideWidth = stride[1],
                Padding = n.Padding switch
                {
                    null or "same" => Padding.Same,
                    "valid" => Padding.Valid,
                    _ => throw new PackageFormatException($"{where}: unknown padding '{n.Padding}'"),
                },
                Weights = n.Weights is null ? null : ReadSBytes(where, "weights", n.Weights, blob, budget),
                WeightScales = n.WeightScales,
                Bias = n.Bias is null ? null : ReadInts(where, "bias", n.Bias, blob, budget),
                ClampMin = n.ClampMin ?? sbyte.MinValue,
                ClampMax = n.ClampMax ?? sbyte.MaxValue,
                Table = n.Table is null ? null : ReadSBytes(where, "table", n.Table, blob, budget),
                TimeSteps = n.TimeSteps ?? 0,
                Thresholds = n.Thresholds,
                Reparameterisation = n.Reparameterisation ?? "none",
                Kernel = n.KernelName ?? "",
            };
        }

        return new ModelGraph
        {
            Tensors = tensors,
            Nodes = nodes,
            InputTensor = g.Input ?? throw Missing("graph", "input"),
            LogitsTensor = g.Logits ?? throw Missing("graph", "logits"),
            OutputTensor = g.Output ?? throw Missing("graph", "output"),
        };
    }

    private static int[] Pair(string where, string field, int[]? value)
    {
        if (value is null) return [1, 1];
        if (value.Length != 2) throw new PackageFormatException($"{where}: {field} must be [height, width]");
        return value;
    }

    /// <summary>Bytes the blob references have claimed so far, against the blob's length.</summary>
    private sealed class BlobBudget(int blobLength)
    {
        private long _claimed;

        public void Claim(string where, string field, int bytes)
        {
            _claimed += bytes;
            if (_claimed > blobLength)
                throw new PackageFormatException($"{where}: {field} brings the bytes referenced from the blob to {_claimed}, more than the blob's {blobLength} (references may overlap but not add up to more than the blob)");
        }
    }

    private static ReadOnlySpan<byte> Slice(string where, string field, BlobRef r, ReadOnlySpan<byte> blob, int elementSize, BlobBudget budget)
    {
        long offset = r.Offset ?? throw Missing(where, field + ".offset");
        long length = r.Length ?? throw Missing(where, field + ".length");
        // Checked before multiplying so that no value can overflow.
        if (offset < 0 || length < 0 || offset > blob.Length || length > (blob.Length - offset) / elementSize)
            throw new PackageFormatException($"{where}: {field} [offset {offset}, {length} elements] lies outside the {blob.Length}-byte blob");
        budget.Claim(where, field, (int)length * elementSize);
        return blob.Slice((int)offset, (int)length * elementSize);
    }

    private static sbyte[] ReadSBytes(string where, string field, BlobRef r, ReadOnlySpan<byte> blob, BlobBudget budget)
    {
        ReadOnlySpan<byte> bytes = Slice(where, field, r, blob, 1, budget);
        var values = new sbyte[bytes.Length];
        bytes.CopyTo(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()));
        return values;
    }

    private static int[] ReadInts(string where, string field, BlobRef r, ReadOnlySpan<byte> blob, BlobBudget budget)
    {
        ReadOnlySpan<byte> bytes = Slice(where, field, r, blob, 4, budget);
        var values = new int[bytes.Length / 4];
        for (int i = 0; i < values.Length; i++) values[i] = BinaryPrimitives.ReadInt32LittleEndian(bytes[(4 * i)..]);
        return values;
    }

    private static PackageFormatException Missing(string where, string field) => new($"{where}: field '{field}' missing");

    internal static string OneLine(string message) => message.ReplaceLineEndings(" ");
}
