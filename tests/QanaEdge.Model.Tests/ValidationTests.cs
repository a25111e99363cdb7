using System.Buffers.Binary;
using System.Text;
using System.Text.Json.Nodes;
using QanaEdge.Model.Graph;
using QanaEdge.Model.Packaging;

namespace QanaEdge.Model.Tests;

/// <summary>One test per validation rule: a valid package, one field broken, the loader's message.</summary>
public class ValidationTests
{
    private static readonly byte[] Valid = PackageWriter.ToBytes(SmallPackages.Build());

    private static PackageFormatException Refused(byte[] bytes) =>
        Assert.Throws<PackageFormatException>(() => PackageReader.Load(bytes));

    private static void RefusedEdit(Action<JsonObject> edit, string expected)
    {
        var e = Refused(PackageBytes.EditJson(Valid, edit));
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void TheBaselineIsValid() => PackageReader.Load(Valid);

    // ---- header, lengths, checksum, trailing bytes ----

    [Fact]
    public void AMissingFileOrAFolderIsOurExceptionAndNamedAsSuch()
    {
        string folder = Directory.CreateTempSubdirectory("qana-reader-").FullName;
        try
        {
            string missing = Path.Combine(folder, "no-such.qana");
            Assert.Equal($"'{missing}' not found", Assert.Throws<PackageFormatException>(() => PackageReader.Load(missing)).Message);
            Assert.Equal($"'{folder}' is a directory, expected a file", Assert.Throws<PackageFormatException>(() => PackageReader.Load(folder)).Message);
        }
        finally { Directory.Delete(folder, recursive: true); }
    }

    [Fact]
    public void BadMagic()
    {
        byte[] b = (byte[])Valid.Clone();
        b[1] = (byte)'X';
        Assert.Contains("magic", Refused(b).Message);
    }

    [Fact]
    public void UnsupportedVersion()
    {
        var (json, blob) = PackageBytes.Split(Valid);
        Assert.Contains("format version 2", Refused(PackageBytes.Join(json, blob, version: 2)).Message);
    }

    [Fact]
    public void ReservedFlags()
    {
        var (json, blob) = PackageBytes.Split(Valid);
        Assert.Contains("flags", Refused(PackageBytes.Join(json, blob, flags: 1)).Message);
    }

    [Theory]
    [InlineData(16, 0u, "JSON length")]
    [InlineData(16, 0xFFFF_FFFFu, "JSON length")]
    [InlineData(20, 0xFFFF_FFFFu, "blob length")]
    [InlineData(20, 1u << 25, "truncated")]
    public void LengthFieldsOutOfRange(int offset, uint value, string expected)
    {
        byte[] b = (byte[])Valid.Clone();
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(offset), value);
        Assert.Contains(expected, Refused(b).Message);
    }

    [Fact]
    public void Truncated()
    {
        Assert.Contains("truncated", Refused(Valid.AsSpan(0, 40).ToArray()).Message);
        Assert.Contains("truncated", Refused(Valid.AsSpan(0, Valid.Length - 1).ToArray()).Message);
        Assert.Contains("truncated", Refused([]).Message);
    }

    [Fact]
    public void ChecksumMismatch()
    {
        byte[] b = (byte[])Valid.Clone();
        b[30] ^= 0x20;
        Assert.Contains("checksum", Refused(b).Message);
    }

    [Fact]
    public void TrailingBytes()
    {
        byte[] b = [.. Valid, 1, 2, 3];
        Assert.Contains("after the checksum", Refused(b).Message);
        byte[] fakeSignature = [.. Valid, .. new byte[PackageFormat.SignatureBlockSize]];
        Assert.Contains("signature block", Refused(fakeSignature).Message);
    }

    [Fact]
    public void NotJson()
    {
        var (_, blob) = PackageBytes.Split(Valid);
        Assert.Contains("JSON", Refused(PackageBytes.Join("{\"manifest\": [1,"u8.ToArray(), blob)).Message);
        Assert.Contains("JSON", Refused(PackageBytes.Join(Encoding.UTF8.GetBytes("null"), blob)).Message);
    }

    // ---- JSON structure ----

    [Fact] public void MissingManifest() => RefusedEdit(j => j.Remove("manifest"), "manifest missing");
    [Fact] public void MissingGraph() => RefusedEdit(j => j.Remove("graph"), "graph missing");
    [Fact] public void MissingRequiredManifestField() => RefusedEdit(j => j["manifest"]!.AsObject().Remove("modelId"), "JSON");
    [Fact] public void NullManifestArray() => RefusedEdit(j => j["manifest"]!["classes"] = null, "JSON");
    [Fact] public void UnknownOp() => RefusedEdit(j => PackageBytes.Node(j, "pw")["op"] = "fft", "unknown op 'fft'");
    [Fact] public void UnknownPadding() => RefusedEdit(j => PackageBytes.Node(j, "dw")["padding"] = "reflect", "unknown padding");
    [Fact] public void UnknownTensorType() => RefusedEdit(j => PackageBytes.Tensor(j, "dw")["type"] = "float32", "unknown type");
    [Fact] public void UnknownProfile() => RefusedEdit(j => j["manifest"]!["profile"] = "int2", "JSON");
    [Fact] public void MissingTensorField() => RefusedEdit(j => PackageBytes.Tensor(j, "dw").Remove("scale"), "'scale' missing");
    [Fact] public void MissingNodeOutput() => RefusedEdit(j => PackageBytes.Node(j, "dw").Remove("output"), "'output' missing");
    [Fact] public void KernelNotAPair() => RefusedEdit(j => PackageBytes.Node(j, "dw")["kernel"] = new JsonArray(3, 3, 3), "kernel must be [height, width]");

    // ---- blob references ----

    [Fact] public void BlobOffsetOutside() => RefusedEdit(j => PackageBytes.Node(j, "head")["weights"]!["offset"] = 1_000_000_000, "outside");
    [Fact] public void BlobNegativeLength() => RefusedEdit(j => PackageBytes.Node(j, "head")["bias"]!["length"] = -1, "outside");
    [Fact] public void BlobLengthOverflow() => RefusedEdit(j => PackageBytes.Node(j, "head")["bias"]!["length"] = long.MaxValue / 2, "outside");

    // ---- indices and order ----

    [Fact] public void InputIndexOutOfRange() => RefusedEdit(j => PackageBytes.Node(j, "pw")["inputs"] = new JsonArray(99), "index 99 out of range");
    [Fact] public void NegativeIndex() => RefusedEdit(j => j["graph"]!["logits"] = -1, "logits tensor index -1");
    [Fact] public void OutputIndexOutOfRange() => RefusedEdit(j => PackageBytes.Node(j, "pw")["output"] = 1000, "output index 1000");

    [Fact]
    public void UsedBeforeProduced() => RefusedEdit(j =>
    {
        var nodes = j["graph"]!["nodes"]!.AsArray();
        JsonNode first = nodes[1]!.DeepClone(), second = nodes[2]!.DeepClone();
        nodes[1] = second;
        nodes[2] = first;
    }, "used before any node produces it");

    [Fact] public void InputTensorProducedByANode() => RefusedEdit(j => PackageBytes.Node(j, "pw")["output"] = 0, "writes the graph's input tensor");
    [Fact] public void TensorProducedTwice() => RefusedEdit(j => PackageBytes.Node(j, "pw")["output"] = 2, "already produced");
    [Fact]
    public void OrphanTensor() => RefusedEdit(j => j["graph"]!["tensors"]!.AsArray().Add(
        new JsonObject { ["name"] = "orphan", ["height"] = 1, ["width"] = 1, ["channels"] = 1, ["scale"] = 1.0, ["zeroPoint"] = 0 }), "produced by no node");
    [Fact] public void DuplicateNodeName() => RefusedEdit(j => PackageBytes.Node(j, "pw")["name"] = "dw", "duplicate node name");

    // ---- per-operator shape rules ----

    [Fact] public void ConvOutputSize() => RefusedEdit(j => PackageBytes.Tensor(j, "stem")["height"] = 7, "window rule gives 8x8");
    [Fact] public void DepthwiseStrideChangesOutputSize() => RefusedEdit(j => PackageBytes.Node(j, "dw")["stride"] = new JsonArray(1, 1), "window rule gives 8x8");
    [Fact] public void ValidPaddingOutputSize() => RefusedEdit(j => PackageBytes.Node(j, "dw")["padding"] = "valid", "window rule gives 3x3");
    [Fact] public void ZeroStride() => RefusedEdit(j => PackageBytes.Node(j, "dw")["stride"] = new JsonArray(0, 2), "stride 0x2");
    [Fact] public void HugeKernel() => RefusedEdit(j => PackageBytes.Node(j, "stem")["kernel"] = new JsonArray(99, 3), "kernel 99x3");
    [Fact] public void KernelOnPointwise() => RefusedEdit(j => PackageBytes.Node(j, "pw")["kernel"] = new JsonArray(3, 3), "without a window");
    [Fact]
    public void PointwiseTakesNoStride()
    {
        RefusedEdit(j => PackageBytes.Node(j, "pw")["stride"] = new JsonArray(2, 2), "stride 2x2 on a pointwise convolution, which keeps height and width");
        // Consistent shapes do not make it acceptable: the engines run pointwise as a GEMM over every pixel.
        var graph = new ModelGraph
        {
            Tensors =
            [
                new TensorSpec { Name = "x", Height = 4, Width = 4, Channels = 2, Scale = 0.1, ZeroPoint = 0 },
                new TensorSpec { Name = "y", Height = 2, Width = 2, Channels = 3, Scale = 0.1, ZeroPoint = 0 },
            ],
            Nodes =
            [
                new Node { Name = "proj", Kind = OpKind.PointwiseConv2D, Inputs = [0], Output = 1, StrideHeight = 2, StrideWidth = 2,
                    Weights = new sbyte[6], WeightScales = [0.01], Bias = new int[3] },
            ],
            InputTensor = 0, LogitsTensor = 1, OutputTensor = 1,
        };
        var e = Assert.Throws<PackageFormatException>(() => GraphValidator.Validate(graph));
        Assert.Contains("a strided 1x1 projection is a conv2d with a 1x1 kernel", e.Message);
    }
    [Fact] public void ConvWeightLength() => RefusedEdit(j => PackageBytes.Node(j, "stem")["weights"]!["length"] = 107, "layout [Cout,Kh,Kw,Cin] needs 108");
    [Fact] public void DepthwiseWeightLength() => RefusedEdit(j => PackageBytes.Node(j, "dw")["weights"]!["length"] = 35, "layout [Kh,Kw,C] needs 36");
    [Fact] public void PointwiseWeightLength() => RefusedEdit(j => PackageBytes.Node(j, "pw")["weights"]!["length"] = 15, "layout [Cout,Cin] needs 16");
    [Fact] public void DenseInputLength() => RefusedEdit(j => PackageBytes.Node(j, "head")["weights"]!["length"] = 7 * 127, "layout [Out,In] needs 896");
    [Fact] public void MissingWeights() => RefusedEdit(j => PackageBytes.Node(j, "pw").Remove("weights"), "weights missing");
    [Fact] public void WeightScaleCount() => RefusedEdit(j => PackageBytes.Node(j, "pw")["weightScales"] = new JsonArray(0.1, 0.1), "must be 1 or 4");
    [Fact] public void WeightScaleZero() => RefusedEdit(j => PackageBytes.Node(j, "dw")["weightScales"] = new JsonArray(0.0), "weight scale 0 0 must be finite and > 0");
    [Fact] public void WeightScaleNegative() => RefusedEdit(j => PackageBytes.Node(j, "dw")["weightScales"] = new JsonArray(-0.5), "must be finite and > 0");
    [Fact] public void WeightScaleInfinite() => RefusedEdit(j => PackageBytes.Node(j, "dw")["weightScales"] = JsonNode.Parse("[1e400]"), "must be finite and > 0");
    // ---- integer parameters the engine derives: refused at load, not when an engine is made ----

    [Theory]
    [InlineData("dw", "1e20", "node 1 'dw' (DepthwiseConv2D): requantization multiplier s_in·s_w/s_out of channel 0 = 4.70588E+19 is too large for the integer engine (must be below 2^30)")]
    [InlineData("head", "1e20", "node 12 'head' (Dense): requantization multiplier s_in·s_w/s_out of channel 0")]
    [InlineData("stem", "1e300", "node 0 'stem' (Conv2D): requantization multiplier s_in·s_w/s_out of channel 0 = 1.66667E+299 is too large")]
    public void WeightScaleTheEngineCannotRepresent(string node, string scale, string expected) =>
        RefusedEdit(j => PackageBytes.Node(j, node)["weightScales"] = JsonNode.Parse($"[{string.Join(',', Enumerable.Repeat(scale, PackageBytes.Node(j, node)["weightScales"]!.AsArray().Count))}]"), expected);

    [Theory]
    [InlineData("add", 1e-20, "node 7 'add' (Add): requantization multiplier 2·max(s_a, s_b)/(2^20·s_out)")]
    [InlineData("concat", 1e-12, "node 3 'concat' (Concat): requantization multiplier s_in/s_out of input 2")]
    [InlineData("gate", 1e-14, "node 5 'gate' (Mul): requantization multiplier s_x·s_gate/s_out")]
    [InlineData("gap", 1e-12, "node 8 'gap' (GlobalAvgPool): requantization multiplier s_in/(H·W·s_out)")]
    [InlineData("relu", 1e-12, "node 9 'relu' (Clamp): requantization multiplier s_in/s_out")]
    public void OutputScaleTheEngineCannotRepresent(string tensor, double scale, string expected) =>
        RefusedEdit(j => PackageBytes.Tensor(j, tensor)["scale"] = scale, expected);

    [Fact]
    public void AMultiplierThatIsNotFiniteFromFiniteScales() => RefusedEdit(j =>
    {
        // s_in·s_w overflows a double although each is finite; the dw node itself gets a tiny multiplier.
        PackageBytes.Tensor(j, "dw")["scale"] = 1e300;
        PackageBytes.Node(j, "pw")["weightScales"] = new JsonArray(1e300);
    }, "node 2 'pw' (PointwiseConv2D): requantization multiplier s_in·s_w/s_out of channel 0 is not finite, although every scale is");

    [Fact]
    public void MultipliersJustBelowTheLimitLoad()
    {
        // The clamp's s_in/s_out a little under 2^30 loads, 2^30 does not.
        PackageReader.Load(PackageBytes.EditJson(Valid, j => PackageBytes.Tensor(j, "relu")["scale"] = 0.06 / (Math.Pow(2, 30) * 0.99)));
        RefusedEdit(j => PackageBytes.Tensor(j, "relu")["scale"] = 0.06 / Math.Pow(2, 30), "node 9 'relu' (Clamp): requantization multiplier s_in/s_out = 1.07374E+09 is too large");
        // The edge is where the Q31 form rounds up to 2^31 and carries into the exponent: 2^30·(1 − 2^−31) is
        // M = 2^31 − 1, 2^30·(1 − 2^−33) rounds to 2^31.
        Assert.True(IntegerRange.MultiplierFits(Math.Pow(2, 30) * (1 - Math.Pow(2, -31))));
        Assert.False(IntegerRange.MultiplierFits(Math.Pow(2, 30) * (1 - Math.Pow(2, -33))));
    }

    /// <summary>One weighted node: x [1,1,2] → y; the accumulator bound is |bias| + 255·Σ|w| of each output's taps.</summary>
    private static ModelGraph OneWeighted(OpKind kind, sbyte[] weights, int[] bias, int outChannels) => new()
    {
        Tensors =
        [
            new TensorSpec { Name = "x", Height = 1, Width = 1, Channels = 2, Scale = 0.1, ZeroPoint = 0 },
            new TensorSpec { Name = "y", Height = 1, Width = 1, Channels = outChannels, Scale = 0.1, ZeroPoint = 0 },
        ],
        Nodes = [new Node { Name = "w", Kind = kind, Inputs = [0], Output = 1, Weights = weights, WeightScales = [0.01], Bias = bias }],
        InputTensor = 0, LogitsTensor = 1, OutputTensor = 1,
    };

    [Fact]
    public void AnAccumulatorThatCouldOverflowIsRefused()
    {
        // Dense [1, 2]: 255·(127 + 127) = 64,770 of taps; with the bias the bound reaches 2^31 − 1 exactly.
        int edge = int.MaxValue - 64770;
        GraphValidator.Validate(OneWeighted(OpKind.Dense, [127, 127], [edge - 1], 1));
        var e = Assert.Throws<PackageFormatException>(() => GraphValidator.Validate(OneWeighted(OpKind.Dense, [127, 127], [edge], 1)));
        Assert.Equal($"node 0 'w' (Dense): the int32 accumulator of channel 0 could overflow (|bias| + 255·Σ|w| = {int.MaxValue}, must be below 2^31 − 1)", e.Message);
        Assert.Throws<PackageFormatException>(() => GraphValidator.Validate(OneWeighted(OpKind.Dense, [-128, 127], [-edge], 1)));

        // Depthwise [1, 1, C]: channel c's only tap is weights[c], so channel 1 counts -128 alone.
        GraphValidator.Validate(OneWeighted(OpKind.DepthwiseConv2D, [127, -128], [0, int.MaxValue - 128 * 255 - 1], 2));
        e = Assert.Throws<PackageFormatException>(() => GraphValidator.Validate(OneWeighted(OpKind.DepthwiseConv2D, [127, -128], [0, int.MaxValue - 128 * 255], 2)));
        Assert.Contains("accumulator of channel 1 could overflow", e.Message);
    }

    [Fact] public void BiasLength() => RefusedEdit(j => PackageBytes.Node(j, "pw")["bias"]!["length"] = 3, "3 biases, must be 4");
    [Fact] public void ClampOutsideInt8() => RefusedEdit(j => PackageBytes.Node(j, "pw")["clampMax"] = 128, "clamp [-128, 128]");
    [Fact] public void ClampMinAboveMax() => RefusedEdit(j => { PackageBytes.Node(j, "relu")["clampMin"] = 10; PackageBytes.Node(j, "relu")["clampMax"] = 5; }, "min <= max");
    [Fact] public void SigmoidTableLength() => RefusedEdit(j => PackageBytes.Node(j, "sigmoid")["table"]!["length"] = 255, "255 entries, must have 256");
    [Fact] public void SigmoidWithoutTable() => RefusedEdit(j => PackageBytes.Node(j, "sigmoid").Remove("table"), "lookup table missing");
    [Fact] public void TableOnAnotherOp() => RefusedEdit(j => PackageBytes.Node(j, "add")["table"] = PackageBytes.Node(j, "sigmoid")["table"]!.DeepClone(), "lookup table on an operator");
    [Fact] public void WeightsOnAnAdd() => RefusedEdit(j => PackageBytes.Node(j, "add")["weights"] = PackageBytes.Node(j, "pw")["weights"]!.DeepClone(), "takes none");
    [Fact] public void MulBroadcast() => RefusedEdit(j => PackageBytes.Node(j, "se")["inputs"] = new JsonArray(8, 2), "does not broadcast");
    [Fact] public void AddArity() => RefusedEdit(j => PackageBytes.Node(j, "add")["inputs"] = new JsonArray(6), "1 inputs, the operator takes 2");
    [Fact] public void AddShapeDiffers() => RefusedEdit(j => PackageBytes.Node(j, "add")["inputs"] = new JsonArray(6, 3), "second input is 4x4x4");
    [Fact] public void ConcatChannelSum() => RefusedEdit(j => PackageBytes.Tensor(j, "concat")["channels"] = 9, "sum to 8, output has 9");
    [Fact] public void ConcatSpatial() => RefusedEdit(j => PackageBytes.Node(j, "concat")["inputs"] = new JsonArray(1, 3), "input 1 is 8x8");
    [Fact] public void GapOutput() => RefusedEdit(j => PackageBytes.Tensor(j, "gap")["height"] = 2, "output must be 1x1x8");
    [Fact] public void ReshapeCount() => RefusedEdit(j => PackageBytes.Tensor(j, "flatten")["channels"] = 127, "changes the element count");
    [Fact] public void ReshapeRequantizes() => RefusedEdit(j => PackageBytes.Tensor(j, "flatten")["scale"] = 0.07, "keep the input's scale");
    [Fact] public void ReadoutThresholdZero() => RefusedEdit(j => PackageBytes.Node(j, "readout")["thresholds"] = new JsonArray(64, 0, 64, 64, 64, 64, 64), "threshold 1 is 0");
    [Fact] public void ReadoutThresholdCount() => RefusedEdit(j => PackageBytes.Node(j, "readout")["thresholds"] = new JsonArray(64, 64), "2 thresholds for 7 classes");
    [Fact] public void ReadoutTimeSteps() => RefusedEdit(j => PackageBytes.Node(j, "readout")["timeSteps"] = 0, "time steps 0");
    [Fact] public void ReadoutOutputType() => RefusedEdit(j => PackageBytes.Tensor(j, "spikes")["type"] = "int8", "must be int32");
    [Fact] public void Int32Elsewhere() => RefusedEdit(j => PackageBytes.Tensor(j, "pw")["type"] = "int32", "output tensor must be int8");

    // ---- quantization and limits ----

    [Fact] public void TensorScaleZero() => RefusedEdit(j => PackageBytes.Tensor(j, "dw")["scale"] = 0, "scale 0 must be finite and > 0");
    [Fact] public void ZeroPointOutsideInt8() => RefusedEdit(j => PackageBytes.Tensor(j, "dw")["zeroPoint"] = 200, "zero point 200 outside int8");
    [Fact] public void HugeTensor() => RefusedEdit(j => { PackageBytes.Tensor(j, "gap")["height"] = 65536; PackageBytes.Tensor(j, "gap")["width"] = 65536; }, "exceeds the limit");
    [Fact] public void NegativeDimension() => RefusedEdit(j => PackageBytes.Tensor(j, "gap")["channels"] = -8, "dimension below 1");

    [Fact]
    public void TooManyClasses()
    {
        // 1.5 M classes used to load, and the engine's softmax then put 12 MB on the stack.
        RefusedEdit(j =>
        {
            PackageBytes.Tensor(j, "logits")["channels"] = 1_500_000;
            PackageBytes.Tensor(j, "spikes")["channels"] = 1_500_000;
        }, "the logits tensor holds 1500000 classes, over the limit of 256");
        RefusedEdit(j => PackageBytes.Tensor(j, "logits")["channels"] = PackageLimits.MaxClasses + 1, "over the limit of 256");
    }

    [Fact]
    public void TooManyNodes() => RefusedEdit(j =>
    {
        var nodes = j["graph"]!["nodes"]!.AsArray();
        JsonNode template = nodes[3]!;
        for (int i = 0; i < PackageLimits.MaxNodes; i++) nodes.Add(template.DeepClone());
    }, "'nodes' holds more than 2048 entries, the limit");

    /// <summary>
    /// The work of one run is bounded: a 31×31 convolution on 128×128×16 (a 250 KB package) needs 4.0 G
    /// multiply-accumulates per image, seconds on a fast machine and minutes on a board, and used to load. The same
    /// node on 64×64 (1.0 G) loads.
    /// </summary>
    [Fact]
    public void TooManyMultiplyAccumulates()
    {
        static ModelGraph Conv(int size) => new()
        {
            Tensors =
            [
                new TensorSpec { Name = "x", Height = size, Width = size, Channels = 16, Scale = 0.1, ZeroPoint = 0 },
                new TensorSpec { Name = "y", Height = size, Width = size, Channels = 16, Scale = 0.1, ZeroPoint = 0 },
                new TensorSpec { Name = "logits", Height = 1, Width = 1, Channels = 16, Scale = 0.1, ZeroPoint = 0 },
            ],
            Nodes =
            [
                new Node { Name = "conv", Kind = OpKind.Conv2D, Inputs = [0], Output = 1, KernelHeight = 31, KernelWidth = 31,
                    Weights = new sbyte[16 * 31 * 31 * 16], WeightScales = [0.01], Bias = new int[16] },
                new Node { Name = "gap", Kind = OpKind.GlobalAvgPool, Inputs = [1], Output = 2 },
            ],
            InputTensor = 0, LogitsTensor = 2, OutputTensor = 2,
        };
        GraphValidator.Validate(Conv(64));
        var e = Assert.Throws<PackageFormatException>(() => GraphValidator.Validate(Conv(128)));
        Assert.Equal("node 0 'conv' (Conv2D): brings the graph to 4030726144 multiply-accumulates per run, over the limit of 2147483648", e.Message);
    }

    /// <summary>
    /// A package whose JSON holds a million tiny entries where the validation accepts a few (three bytes of JSON per
    /// empty node): refused by the count, before the document is deserialized, so the refusal costs next to no
    /// memory. Deserialized first, a million empty nodes took 190 MB, and the 32 MiB JSON limit allowed 11 million
    /// (2 GB) before the node limit refused them. A property name written with escapes is the same name.
    /// </summary>
    [Theory]
    [InlineData("\"nodes\":[", "{},", "'nodes' holds more than 2048 entries")]
    [InlineData("\"nod\\u0065s\":[", "{},", "'nodes' holds more than 2048 entries")]
    [InlineData("\"tensors\":[", "{},", "'tensors' holds more than 4096 entries")]
    [InlineData("\"classes\":[", "\"a\",", "'classes' holds more than 256 entries")]
    [InlineData("\"layers\":[", "{},", "'layers' holds more than 2048 entries")]
    [InlineData("\"golden\":[", "{},", "'golden' holds more than 64 entries")]
    [InlineData("\"inputs\":[", "0,", "'inputs' holds more than 64 entries")]
    [InlineData("\"metrics\":{", "\"k#\":0,", "'metrics' holds more than 1024 entries")]
    public void AMillionEntriesAreRefusedBeforeTheyAreRead(string opening, string entry, string expected)
    {
        var (json, blob) = PackageBytes.Split(Valid);
        string text = Encoding.UTF8.GetString(json).Replace("\"nodes\":[", opening.Contains("\\u0065") ? opening : "\"nodes\":[", StringComparison.Ordinal);
        int at = text.IndexOf(opening, StringComparison.Ordinal) + opening.Length;
        Assert.True(at >= opening.Length, opening);
        var big = new StringBuilder(text, 0, at, text.Length + 10 * 1_000_000);
        for (int i = 0; i < 1_000_000; i++) big.Append(entry.Replace("#", i.ToString(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal));
        big.Append(text, at, text.Length - at);
        byte[] package = PackageBytes.Join(Encoding.UTF8.GetBytes(big.ToString()), blob);

        var (e, allocated) = RefusedWithAllocation(package);
        Assert.Contains(expected, e.Message);
        Assert.True(allocated < 1 << 20, $"{allocated} bytes allocated to refuse it");
    }

    [Fact]
    public void EntriesUpToTheLimitsStillLoad()
    {
        // The escaped name is read as 'nodes' by the deserializer too, so the package loads as it is.
        var (json, blob) = PackageBytes.Split(Valid);
        string escaped = Encoding.UTF8.GetString(json).Replace("\"nodes\":[", "\"nod\\u0065s\":[", StringComparison.Ordinal);
        Assert.Equal(14, PackageReader.Load(PackageBytes.Join(Encoding.UTF8.GetBytes(escaped), blob)).Graph.Nodes.Length);
        PackageReader.Load(PackageBytes.EditJson(Valid, j =>
        {
            var metrics = j["manifest"]!["metrics"]!.AsObject();
            for (int i = metrics.Count; i < PackageLimits.MaxMapEntries; i++) metrics[$"m{i}"] = i;
        }));
    }

    /// <summary>
    /// A small file whose nodes all name the same 64 KiB of the blob: copies of node <paramref name="template"/>
    /// with their <paramref name="field"/> reference pointing at the padding appended to the blob.
    /// Copied out naively, the references would take 2000 × 64 KiB = 131 MB.
    /// </summary>
    internal static byte[] RepeatedReference(string template, string field, int copies = 2000)
    {
        const int span = 64 << 10;
        var (json, blob) = PackageBytes.Split(Valid);
        var root = JsonNode.Parse(json)!.AsObject();
        var nodes = root["graph"]!["nodes"]!.AsArray();
        JsonObject node = PackageBytes.Node(root, template);
        for (int i = 0; i < copies; i++)
        {
            var copy = node.DeepClone().AsObject();
            copy["name"] = $"{template}-{i}";
            copy[field] = new JsonObject { ["offset"] = blob.Length, ["length"] = span };
            nodes.Add(copy);
        }
        return PackageBytes.Join(Encoding.UTF8.GetBytes(root.ToJsonString()), [.. blob, .. new byte[span]]);
    }

    private static (PackageFormatException Refusal, long Allocated) RefusedWithAllocation(byte[] bytes)
    {
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Refused(bytes);
        return (e, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Fact]
    public void OverlappingReferences_MayNotAddUpToMoreThanTheBlob()
    {
        byte[] bytes = RepeatedReference("head", "weights");
        Assert.True(bytes.Length < 1 << 20, $"{bytes.Length} bytes");
        var (e, allocated) = RefusedWithAllocation(bytes);
        Assert.Contains("more than the blob", e.Message);
        // The JSON parse itself takes a few MB; the 131 MB of copies must never be made.
        Assert.True(allocated < 32 << 20, $"{allocated} bytes allocated for a {bytes.Length}-byte file");
    }

    [Fact]
    public void AReferenceTheOperatorDoesNotTake_IsRefusedBeforeItIsCopied()
    {
        var (e, allocated) = RefusedWithAllocation(RepeatedReference("relu", "table"));
        Assert.Contains("'relu-0': lookup table on an operator that takes none", e.Message);
        Assert.True(allocated < 32 << 20, $"{allocated} bytes allocated");
        (e, allocated) = RefusedWithAllocation(RepeatedReference("add", "weights"));
        Assert.Contains("'add-0': weights, weight scales or bias on an operator that takes none", e.Message);
        Assert.True(allocated < 32 << 20, $"{allocated} bytes allocated");
    }

    // ---- manifest ----

    [Fact] public void ClassCount() => RefusedEdit(j => j["manifest"]!["classes"] = new JsonArray("a", "b"), "2 names for 7 logits");
    [Fact] public void DuplicateClass() => RefusedEdit(j => j["manifest"]!["classes"] = new JsonArray("a", "b", "c", "d", "e", "f", "a"), "duplicate 'a'");
    [Fact] public void InputShape() => RefusedEdit(j => j["manifest"]!["input"]!["height"] = 64, "differs from the input tensor");
    [Fact] public void ColorGains() => RefusedEdit(j => j["manifest"]!["input"]!["colorGains"] = new JsonArray(1, 1), "colorGains");
    [Fact] public void Crop() => RefusedEdit(j => j["manifest"]!["input"]!["crop"] = "random", "input.crop");

    [Fact]
    public void AnAbsentCropMeansCentre()
    {
        // Packages written before the field existed carry no crop: they were all trained on centred crops.
        var package = PackageReader.Load(PackageBytes.EditJson(Valid, j => j["manifest"]!["input"]!.AsObject().Remove("crop")));
        Assert.Equal(InputCrop.Centre, package.Manifest.Input.Crop);
    }
    [Fact] public void CalibrationThresholds() => RefusedEdit(j => j["manifest"]!["calibration"]!["thresholds"] = new JsonArray(5, 5), "one per class");
    [Fact] public void CalibrationThresholdPositive() => RefusedEdit(j => j["manifest"]!["calibration"]!["thresholds"] = new JsonArray(5, 5, 5, 5, 5, 5, -5), "must be positive");
    [Fact] public void CalibrationBeta() => RefusedEdit(j => j["manifest"]!["calibration"]!["beta"] = 0, "beta");
    [Fact] public void CalibrationWindow() => RefusedEdit(j => j["manifest"]!["calibration"]!["readoutWindow"] = 0, "readoutWindow");
    [Fact] public void CalibrationTau() => RefusedEdit(j => j["manifest"]!["calibration"]!["tilingTau"] = 1.5, "tilingTau");
    [Fact]
    public void CalibrationWindowMustBeTheReadoutsTimeSteps()
    {
        // Window 8 against a readout of T 16: it used to load, and every probability request then failed.
        RefusedEdit(j => j["manifest"]!["calibration"]!["readoutWindow"] = 8, "calibration.readoutWindow 8 differs from the readout node's time steps 16");
        RefusedEdit(j =>
        {
            j["manifest"]!["calibration"]!["readoutWindow"] = 8;
            j["manifest"]!["calibration"]!["stepWeights"] = new JsonArray(1, 1, 1, 1, 1, 1, 1, 1);
        }, "differs from the readout node's time steps 16");
        // Both changed together is a consistent package.
        var package = PackageReader.Load(PackageBytes.EditJson(Valid, j =>
        {
            j["manifest"]!["calibration"]!["readoutWindow"] = 8;
            PackageBytes.Node(j, "readout")["timeSteps"] = 8;
        }));
        Assert.Equal(8, package.Manifest.Calibration.ReadoutWindow);
        // A readout update's window is checked against its own readout.
        byte[] update = PackageWriter.ToBytes(SmallPackages.ReadoutUpdate());
        var e = Refused(PackageBytes.EditJson(update, j => j["manifest"]!["calibration"]!["readoutWindow"] = 32));
        Assert.Contains("differs from the readout node's time steps 16", e.Message);
    }
    [Fact] public void StepWeights() => RefusedEdit(j => j["manifest"]!["calibration"]!["stepWeights"] = new JsonArray(1, 2), "stepWeights");

    /// <summary>
    /// β, the step weights and the logits' scale are each finite, but the softmax inputs they multiply into overflowed:
    /// such a package loaded, passed its golden vectors (logits only) and gave NaN probabilities for every image, which
    /// the daemon's result message cannot carry (its worker failed on each one). Refused now, as are step weights whose
    /// sum overflows and, for a graph without a readout (softmax of the real logits), a logits scale that does.
    /// </summary>
    [Fact]
    public void CalibrationWhoseSoftmaxInputsOverflowIsRefused()
    {
        RefusedEdit(j => j["manifest"]!["calibration"]!["beta"] = 1e308, "calibration.beta 1E+308 times the step weights");
        RefusedEdit(j =>
        {
            j["manifest"]!["calibration"]!["beta"] = 1;
            j["manifest"]!["calibration"]!["stepWeights"] = new JsonArray([.. Enumerable.Range(0, 16).Select(t => (JsonNode?)(t < 15 ? 1e308 : -1e308))]);
        }, "probabilities would not be finite");
        RefusedEdit(j =>
        {
            WithoutReadout(j);
            PackageBytes.Tensor(j, "logits")["scale"] = 1e307;
        }, "graph: logits scale 1E+307");

        // Large but harmless values still load: a sharp softmax over 16 steps, a readout-less graph's coarse logits.
        PackageReader.Load(PackageBytes.EditJson(Valid, j => j["manifest"]!["calibration"]!["beta"] = 1e6));
        var withoutReadout = PackageReader.Load(PackageBytes.EditJson(Valid, j =>
        {
            WithoutReadout(j);
            PackageBytes.Tensor(j, "logits")["scale"] = 1e3;
        }));
        Assert.Equal(withoutReadout.Graph.LogitsTensor, withoutReadout.Graph.OutputTensor);
    }

    /// <summary>The small package without its spiking readout (its last node and tensor): the logits are the output.</summary>
    private static void WithoutReadout(JsonObject j)
    {
        var graph = j["graph"]!.AsObject();
        graph["nodes"]!.AsArray().RemoveAt(graph["nodes"]!.AsArray().Count - 1);
        graph["tensors"]!.AsArray().RemoveAt(graph["tensors"]!.AsArray().Count - 1);
        graph["output"] = graph["logits"]!.DeepClone();
    }
    [Fact] public void GoldenLength() => RefusedEdit(j => j["manifest"]!["golden"]![0]!["expectedLogits"] = "AAAA", "expectedLogits");
    [Fact] public void GoldenNotBase64() => RefusedEdit(j => j["manifest"]!["golden"]![0]!["input"] = "!!!", "JSON");
    [Fact] public void ConversionRate() => RefusedEdit(j => j["manifest"]!["conversionSuccessRate"] = 1.5, "conversionSuccessRate");
    [Fact] public void LayerScale() => RefusedEdit(j => j["manifest"]!["layers"]![2]!["scale"] = -1, "layers[2]: scale");
    [Fact] public void UndefinedProfileNumber() => RefusedEdit(j => j["manifest"]!["profile"] = 9, "profile");
    [Fact] public void BaseModelOnAFullModel() => RefusedEdit(j => j["manifest"]!["baseModelId"] = "x", "readout updates only");

    [Fact]
    public void ReadoutUpdateMayHoldOnlyAReadout()
    {
        byte[] update = PackageWriter.ToBytes(SmallPackages.ReadoutUpdate());
        var e = Refused(PackageBytes.EditJson(Valid, j =>
        {
            j["manifest"]!["kind"] = "readout-update";
            j["manifest"]!["baseModelId"] = "m";
            j["manifest"]!["baseModelVersion"] = "1";
        }));
        Assert.Contains("a readout update may hold only", e.Message);
        var missingBase = Refused(PackageBytes.EditJson(update, j => j["manifest"]!.AsObject().Remove("baseModelVersion")));
        Assert.Contains("baseModelVersion missing", missingBase.Message);
    }

    // ---- graphs built in code ----

    [Fact]
    public void GraphWithNullArrays_IsRefusedWithOurException()
    {
        var g = new ModelGraph { Tensors = null!, Nodes = null!, InputTensor = 0, LogitsTensor = 0, OutputTensor = 0 };
        Assert.Throws<PackageFormatException>(() => GraphValidator.Validate(g));
        ModelPackage p = SmallPackages.Build();
        Node[] nodes = (Node[])p.Graph.Nodes.Clone();
        nodes[2] = new Node { Name = "pw", Kind = OpKind.PointwiseConv2D, Inputs = null!, Output = 3 };
        var e = Assert.Throws<PackageFormatException>(() => GraphValidator.Validate(
            new ModelGraph { Tensors = p.Graph.Tensors, Nodes = nodes, InputTensor = 0, LogitsTensor = 13, OutputTensor = 14 }));
        Assert.Contains("inputs missing", e.Message);
        nodes[2] = null!;
        Assert.Throws<PackageFormatException>(() => GraphValidator.Validate(
            new ModelGraph { Tensors = p.Graph.Tensors, Nodes = nodes, InputTensor = 0, LogitsTensor = 13, OutputTensor = 14 }));
    }
}
