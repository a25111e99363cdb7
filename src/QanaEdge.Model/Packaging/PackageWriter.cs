using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text.Json;
using QanaEdge.Model.Graph;

namespace QanaEdge.Model.Packaging;

/// <summary>
/// Writes a <see cref="ModelPackage"/> as an unsigned <c>.qana</c> file (layout in
/// <see cref="PackageFormat"/>). The package is validated first: a package that the reader would refuse
/// is never written (<see cref="PackageFormatException"/>). Output is deterministic: the same package
/// gives the same bytes.
/// </summary>
public static class PackageWriter
{
    public static void Save(ModelPackage package, string path)
    {
        // Whole or not at all: a reader never sees half a package, and a full disk leaves no temporary file behind.
        WholeFile.Write(Path.GetFullPath(path), ToBytes(package), WholeFileOptions.UserOutput);
    }

    public static byte[] ToBytes(ModelPackage package)
    {
        PackageValidator.Validate(package);
        ModelGraph graph = package.Graph;

        var blob = new BlobBuilder();
        var nodes = new NodeDocument[graph.Nodes.Length];
        for (int i = 0; i < nodes.Length; i++)
        {
            Node n = graph.Nodes[i];
            bool convLike = n.Kind is OpKind.Conv2D or OpKind.DepthwiseConv2D or OpKind.PointwiseConv2D;
            nodes[i] = new NodeDocument
            {
                Name = n.Name,
                Op = OpNames.Of(n.Kind),
                Inputs = (int[])n.Inputs.Clone(),
                Output = n.Output,
                Kernel = convLike ? [n.KernelHeight, n.KernelWidth] : null,
                Stride = convLike ? [n.StrideHeight, n.StrideWidth] : null,
                Padding = OpNames.Of(n.Padding),
                Weights = n.Weights is null ? null : blob.Add(n.Weights),
                WeightScales = n.WeightScales is null ? null : (double[])n.WeightScales.Clone(),
                Bias = n.Bias is null ? null : blob.Add(n.Bias),
                ClampMin = n.ClampMin,
                ClampMax = n.ClampMax,
                Table = n.Table is null ? null : blob.Add(n.Table),
                TimeSteps = n.Kind == OpKind.SpikingReadout ? n.TimeSteps : null,
                Thresholds = n.Thresholds is null ? null : (int[])n.Thresholds.Clone(),
                Reparameterisation = n.Reparameterisation,
                KernelName = n.Kernel,
            };
        }
        var tensors = new TensorDocument[graph.Tensors.Length];
        for (int i = 0; i < tensors.Length; i++)
        {
            TensorSpec t = graph.Tensors[i];
            tensors[i] = new TensorDocument
            {
                Name = t.Name, Height = t.Height, Width = t.Width, Channels = t.Channels,
                Type = OpNames.Of(t.Type), Scale = t.Scale, ZeroPoint = t.ZeroPoint,
            };
        }
        var document = new PackageDocument
        {
            Manifest = package.Manifest,
            Graph = new GraphDocument
            {
                Input = graph.InputTensor, Logits = graph.LogitsTensor, Output = graph.OutputTensor,
                Tensors = tensors, Nodes = nodes,
            },
        };

        byte[] json = JsonSerializer.SerializeToUtf8Bytes(document, PackageJsonContext.Default.PackageDocument);
        if (json.Length > PackageLimits.MaxJsonBytes)
            throw new PackageFormatException($"package: JSON of {json.Length} bytes exceeds the limit of {PackageLimits.MaxJsonBytes}");
        if (blob.Length > PackageLimits.MaxBlobBytes)
            throw new PackageFormatException($"package: blob of {blob.Length} bytes exceeds the limit of {PackageLimits.MaxBlobBytes}");

        int contentLength = PackageFormat.HeaderSize + json.Length + blob.Length;
        var bytes = new byte[contentLength + PackageFormat.ChecksumSize];
        PackageFormat.Magic.CopyTo(bytes);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(8), PackageFormat.Version);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(12), 0);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(16), (uint)json.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(20), (uint)blob.Length);
        json.CopyTo(bytes, PackageFormat.HeaderSize);
        blob.CopyTo(bytes.AsSpan(PackageFormat.HeaderSize + json.Length));
        SHA256.HashData(bytes.AsSpan(0, contentLength), bytes.AsSpan(contentLength));
        return bytes;
    }

    /// <summary>Appends typed arrays; int32 arrays start on a 4-byte boundary so a reader may map them.</summary>
    private sealed class BlobBuilder
    {
        private byte[] _buffer = new byte[4096];
        public int Length { get; private set; }

        public BlobRef Add(sbyte[] values)
        {
            int offset = Reserve(values.Length, 1);
            Buffer.BlockCopy(values, 0, _buffer, offset, values.Length);
            return new BlobRef { Offset = offset, Length = values.Length };
        }

        public BlobRef Add(int[] values)
        {
            int offset = Reserve(values.Length * 4L, 4);
            for (int i = 0; i < values.Length; i++)
                BinaryPrimitives.WriteInt32LittleEndian(_buffer.AsSpan(offset + 4 * i), values[i]);
            return new BlobRef { Offset = offset, Length = values.Length };
        }

        public void CopyTo(Span<byte> destination) => _buffer.AsSpan(0, Length).CopyTo(destination);

        private int Reserve(long bytes, int alignment)
        {
            long start = (Length + alignment - 1) / alignment * alignment;
            long end = start + bytes;
            if (end > PackageLimits.MaxBlobBytes)
                throw new PackageFormatException($"package: blob exceeds the limit of {PackageLimits.MaxBlobBytes} bytes");
            if (end > _buffer.Length) Array.Resize(ref _buffer, (int)Math.Min(Math.Max(end, 2L * _buffer.Length), PackageLimits.MaxBlobBytes));
            Length = (int)end;
            return (int)start;
        }
    }
}
