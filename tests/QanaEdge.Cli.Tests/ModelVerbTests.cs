using System.Text.Json;
using QanaEdge.Model.Onnx;
using QanaEdge.Model.Packaging;
using QanaEdge.Model.Tests;

namespace QanaEdge.Cli.Tests;

/// <summary>inspect, export-onnx, bad input and bad usage, run in-process through Cli.Run.</summary>
public sealed class ModelVerbTests(Xunit.Abstractions.ITestOutputHelper log) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("qana-cli").FullName;

    public void Dispose() => Directory.Delete(_dir, true);

    private string Write(string name, byte[] bytes)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private string Package(int seed = 1) => Write($"m{seed}.qana", PackageWriter.ToBytes(SmallPackages.Build(seed)));

    [Fact]
    public void Inspect_ShowsManifestConversionTableMetricsCalibrationAndProfile()
    {
        CliResult r = Qana.Run("inspect", Package());
        log.WriteLine(r.Out);
        Assert.Equal(0, r.Code);
        Assert.Equal("", r.Err);
        Assert.Contains("qana-small-test 1.0.1 (model)", r.Out);
        Assert.Contains("profile      paper8", r.Out);
        Assert.Contains("success rate 100.0%", r.Out);
        // One table row per node, with op, kernel, shape, scale, zero point, reparameterisation, kernel name.
        string stem = r.Out.Split('\n').Single(l => l.StartsWith("0 ", StringComparison.Ordinal));
        Assert.Contains("conv2d 3x3/1", stem);
        Assert.Contains("8x8x4", stem);
        Assert.Contains("bn-fold", stem);
        Assert.Contains("conv2d-3x3-s1", stem);
        Assert.Contains("-128", stem);
        Assert.Contains("spikingReadout", r.Out);
        Assert.Contains("test_top1", r.Out);
        Assert.Contains("readout window T        16", r.Out);
        Assert.Contains("akd1000      ", r.Out);
        Assert.Contains("violations", r.Out); // random 8-bit weights cannot pass the 4-bit profile
    }

    [Fact]
    public void InspectJson_IsOneParsableObject()
    {
        CliResult r = Qana.Run("inspect", "--json", Package());
        Assert.Equal(0, r.Code);
        using JsonDocument doc = JsonDocument.Parse(r.Out);
        JsonElement root = doc.RootElement;
        Assert.Equal("qana-small-test", root.GetProperty("model_id").GetString());
        Assert.Equal("paper8", root.GetProperty("profile").GetString());
        Assert.Equal(14, root.GetProperty("layers").GetArrayLength());
        JsonElement dw = root.GetProperty("layers")[1];
        Assert.Equal("depthwiseConv2d", dw.GetProperty("op").GetString());
        Assert.Equal(4, dw.GetProperty("shape")[0].GetInt32());
        Assert.Equal(-3, dw.GetProperty("zero_point").GetInt32());
        Assert.Equal(1.0, root.GetProperty("conversion_success_rate").GetDouble());
        Assert.Equal(0.5, root.GetProperty("metrics").GetProperty("test_top1").GetDouble());
        Assert.False(root.GetProperty("akd1000").GetProperty("pass").GetBoolean());
        Assert.True(root.GetProperty("akd1000").GetProperty("violations").GetArrayLength() > 0);
        Assert.Equal(JsonValueKind.Null, root.GetProperty("signature").ValueKind);
    }

    /// <summary>
    /// An output that cannot be written fails in one line naming it (not the temporary file beside it), and leaves no
    /// temporary file behind; an output folder that does not exist fails before any work.
    /// </summary>
    [Fact]
    public void Unwritable_outputs_fail_in_one_line_naming_the_target_and_leave_nothing_behind()
    {
        string pkg = Package(), folder = Path.Combine(_dir, "a-folder");
        Directory.CreateDirectory(folder);
        Qana.Run("export-onnx", pkg, folder).AssertOneLineError(1, $"cannot write '{folder}': it is a folder");
        string missing = Path.Combine(_dir, "no-such-folder", "m.onnx");
        Qana.Run("export-onnx", pkg, missing).AssertOneLineError(1, $"cannot write '{missing}': the folder");
        Qana.Run("bench", "--model", pkg, "--runs", "10", "--no-peer", "--json", missing).AssertOneLineError(1, "does not exist");
        Qana.Run("evaluate", "--images", _dir, "--labels", Write("l.csv", "image_id,dx\nx,nv\n"u8.ToArray()), "--json", folder)
            .AssertOneLineError(1, "it is a folder");
        string jpeg = ClassifyCommandTests.Jpegs(1)[0];
        Qana.Run("classify", "--model", pkg, "--saliency", missing, jpeg, jpeg).AssertOneLineError(1, "does not exist");
        Assert.Empty(Directory.GetFiles(_dir, "*.tmp-*", SearchOption.AllDirectories));
    }

    /// <summary>
    /// Two mistakes refused as bad usage before any work: a bench count far beyond what can be timed (it ended in an
    /// out-of-memory error), and evaluate's --json naming the labels file (the metrics overwrote the labels after the run).
    /// </summary>
    [Fact]
    public void A_bench_count_out_of_range_and_a_json_output_over_the_labels_are_bad_usage()
    {
        string pkg = Package();
        Qana.Run("bench", "--model", pkg, "--runs", "2000000000", "--no-peer").AssertOneLineError(2, "--runs must be between 10 and 10000000");
        byte[] labelsText = "image_id,dx\nx,nv\n"u8.ToArray();
        string labels = Write("labels.csv", labelsText);
        Qana.Run("evaluate", "--images", _dir, "--labels", labels, "--model", pkg, "--json", labels)
            .AssertOneLineError(2, "is the --labels file");
        Assert.Equal(labelsText, File.ReadAllBytes(labels));
        // With --labels a link to the --json file as well: only the paths were compared, and the metrics replaced the
        // file the link leads to.
        string link = Path.Combine(_dir, "labels-link.csv");
        File.CreateSymbolicLink(link, labels);
        Qana.Run("evaluate", "--images", _dir, "--labels", link, "--model", pkg, "--json", labels)
            .AssertOneLineError(2, $"--json '{labels}' is the --labels file");
        Assert.Equal(labelsText, File.ReadAllBytes(labels));
    }

    /// <summary>
    /// split checks all three outputs before it writes any: with test.csv taken by a folder, train.csv and val.csv are
    /// not written either (they were, leaving parts of two splits side by side); otherwise all three are written whole.
    /// </summary>
    [Fact]
    public void Split_writes_none_of_its_files_when_one_cannot_be_written()
    {
        string images = Path.GetDirectoryName(ClassifyCommandTests.Jpegs(1)[0])!;
        string labels = Path.Combine(Path.GetDirectoryName(images)!, "labels.csv");
        string output = Path.Combine(_dir, "splits");
        Directory.CreateDirectory(Path.Combine(output, "test.csv"));
        Qana.Run("split", "--images", images, "--labels", labels, "--out", output).AssertOneLineError(1, "test.csv': it is a folder");
        Assert.False(File.Exists(Path.Combine(output, "train.csv")));
        Assert.False(File.Exists(Path.Combine(output, "val.csv")));

        Directory.Delete(Path.Combine(output, "test.csv"));
        CliResult r = Qana.Run("split", "--images", images, "--labels", labels, "--out", output);
        Assert.Equal(0, r.Code);
        int rows = new[] { "train.csv", "val.csv", "test.csv" }.Sum(f => File.ReadAllLines(Path.Combine(output, f)).Length - 1);
        Assert.Equal(File.ReadAllLines(labels).Length - 1, rows);
        Assert.Empty(Directory.GetFiles(output, "*.tmp-*"));
    }

    /// <summary>
    /// Splitting a split again with --out its own folder (--labels DIR/train.csv --out DIR) is bad usage, and neither
    /// the labels nor the other parts are touched: the new train.csv replaced the labels it was read from.
    /// </summary>
    [Fact]
    public void Split_refuses_to_write_a_part_over_its_labels()
    {
        string images = Path.GetDirectoryName(ClassifyCommandTests.Jpegs(1)[0])!;
        string[] metadata = File.ReadAllLines(Path.Combine(Path.GetDirectoryName(images)!, "labels.csv"));
        string output = Path.Combine(_dir, "again");
        Directory.CreateDirectory(output);
        string labels = Path.Combine(output, "train.csv");
        File.WriteAllLines(labels, metadata.Take(120));
        byte[] before = File.ReadAllBytes(labels);
        Qana.Run("split", "--images", images, "--labels", labels, "--out", output)
            .AssertOneLineError(2, $"--out '{labels}' is the --labels file; the split's train.csv would replace the labels");
        Assert.Equal(before, File.ReadAllBytes(labels));
        Assert.Equal([labels], Directory.GetFiles(output));
        Assert.Equal(0, Qana.Run("split", "--images", images, "--labels", labels, "--out", Path.Combine(output, "parts")).Code);
    }

    [Fact]
    public void Inspect_CorruptPackage_OneLineExit1()
    {
        byte[] bytes = PackageWriter.ToBytes(SmallPackages.Build());
        bytes[100] ^= 0x10;
        Qana.Run("inspect", Write("corrupt.qana", bytes)).AssertOneLineError(1, "checksum");
    }

    [Fact]
    public void Inspect_InvalidGraphBehindAGoodChecksum_OneLineExit1()
    {
        byte[] bytes = PackageBytes.EditJson(PackageWriter.ToBytes(SmallPackages.Build()),
            j => PackageBytes.Node(j, "pw")["inputs"] = new System.Text.Json.Nodes.JsonArray(42));
        Qana.Run("inspect", Write("bad.qana", bytes)).AssertOneLineError(1, "node 2 'pw'");
    }

    [Theory]
    [InlineData(0)]
    [InlineData(10)]
    [InlineData(57)]
    [InlineData(300)]
    public void Inspect_TruncatedPackage_OneLineExit1(int keep)
    {
        byte[] bytes = PackageWriter.ToBytes(SmallPackages.Build());
        Qana.Run("inspect", Write("short.qana", bytes.AsSpan(0, keep).ToArray())).AssertOneLineError(1, "truncated");
    }

    [Fact]
    public void Inspect_NotAPackage_And_MissingFile()
    {
        Qana.Run("inspect", Write("text.qana", "hello, this is not a model package at all"u8.ToArray())).AssertOneLineError(1, "magic");
        Qana.Run("inspect", Path.Combine(_dir, "missing.qana")).AssertOneLineError(1, "missing.qana' not found");
    }

    [Theory]
    [InlineData(new string[0], "")]
    [InlineData(new[] { "frobnicate" }, "frobnicate")]
    [InlineData(new[] { "inspect" }, "PKG")]
    [InlineData(new[] { "inspect", "--colour", "x.qana" }, "'--colour'")]
    [InlineData(new[] { "inspect", "--jsn" }, "'--jsn'")]
    [InlineData(new[] { "inspect", "a.qana", "b.qana" }, "'b.qana'")]
    [InlineData(new[] { "keygen", "--out", "k" }, "--role")]
    [InlineData(new[] { "keygen", "--role", "admin", "--out", "k" }, "admin")]
    [InlineData(new[] { "sign", "x.qana" }, "--key")]
    [InlineData(new[] { "verify", "x.qana" }, "--trust")]
    [InlineData(new[] { "export-onnx", "x.qana" }, "OUT")]
    public void BadUsage_Exit2_OneLine(string[] args, string expected)
    {
        CliResult r = Qana.Run(args);
        r.AssertOneLineError(2, expected);
        Assert.Equal("", r.Out);
    }

    [Fact]
    public void Help_Exit0_ListsTheVerbs()
    {
        CliResult r = Qana.Run("--help");
        Assert.Equal(0, r.Code);
        foreach (string verb in new[] { "inspect", "keygen", "sign", "verify", "export-onnx" }) Assert.Contains(verb, r.Out);
    }

    [Fact]
    public void ExportOnnx_WritesTheExportersModel()
    {
        string pkg = Package(3);
        string onnx = Path.Combine(_dir, "m.onnx");
        CliResult r = Qana.Run("export-onnx", pkg, onnx);
        Assert.Equal(0, r.Code);
        Assert.Contains("input [1,3,8,8] -> logits [1,7]", r.Out);
        Assert.Equal(OnnxExporter.ToBytes(PackageReader.Load(pkg)), File.ReadAllBytes(onnx));
    }

    /// <summary>
    /// export-onnx with OUT naming PKG, and bench with --json naming the --model package, are bad usage and leave the
    /// package as it was: the ONNX model, or the measurements, were written over the package, which was lost.
    /// </summary>
    [Fact]
    public void An_output_that_is_the_package_is_refused_and_the_package_kept()
    {
        string pkg = Package(3);
        byte[] bytes = File.ReadAllBytes(pkg);
        Qana.Run("export-onnx", pkg, pkg).AssertOneLineError(2, $"OUT '{pkg}' is the PKG file; the ONNX model would replace the package");
        Assert.Equal(bytes, File.ReadAllBytes(pkg));
        Qana.Run("bench", "--model", pkg, "--json", pkg, "--runs", "10", "--no-peer")
            .AssertOneLineError(2, $"--json '{pkg}' is the --model file; the measurements would replace the package");
        Assert.Equal(bytes, File.ReadAllBytes(pkg));
        PackageReader.Load(pkg);
    }

    /// <summary>
    /// bench --json - writes the JSON to standard output, as evaluate --json - does, and its text lines to standard
    /// error, so standard output is the JSON alone: '-' was taken as a file name and a file called '-' was written.
    /// </summary>
    [Fact]
    public void Bench_json_dash_writes_the_json_to_standard_output()
    {
        string pkg = Package(4), dash = Path.GetFullPath("-");
        bool dashBefore = File.Exists(dash);
        try
        {
            CliResult r = Qana.Run("bench", "--model", pkg, "--json", "-", "--runs", "10", "--no-peer");
            Assert.True(r.Code == 0, r.Err);
            using JsonDocument doc = JsonDocument.Parse(r.Out);
            Assert.Equal("qana-small-test", doc.RootElement.GetProperty("model_id").GetString());
            Assert.Equal(10, doc.RootElement.GetProperty("runs").GetInt32());
            Assert.Contains("latency      p50", r.Err);
            Assert.Equal(dashBefore, File.Exists(dash));
        }
        finally { if (!dashBefore) File.Delete(dash); }
    }

    [Fact]
    public void ExportOnnx_ReadoutUpdate_Exit1()
    {
        string update = Write("u.qana", PackageWriter.ToBytes(SmallPackages.ReadoutUpdate()));
        Qana.Run("export-onnx", update, Path.Combine(_dir, "u.onnx")).AssertOneLineError(1, "readout update");
    }

    /// <summary>A readout update holds only a readout: the verbs that run a model refuse it in one line. classify and
    /// evaluate reported an internal error (ArgumentException), and bench measured the readout alone as if it were the model.</summary>
    [Theory]
    [InlineData("classify")]
    [InlineData("evaluate")]
    [InlineData("bench")]
    public void A_readout_update_given_as_the_model_is_refused_in_one_line(string verb)
    {
        string update = Write("u.qana", PackageWriter.ToBytes(SmallPackages.ReadoutUpdate()));
        string image = ClassifyCommandTests.Jpegs(1)[0];
        string labels = Path.Combine(_dir, "labels.csv");
        File.WriteAllText(labels, $"image_id,dx\n{Path.GetFileNameWithoutExtension(image)},nv\n");
        string[] args = verb switch
        {
            "classify" => ["classify", image, "--model", update, "--json"],
            "evaluate" => ["evaluate", "--images", Path.GetDirectoryName(image)!, "--labels", labels, "--model", update],
            _ => ["bench", "--model", update, "--runs", "10", "--no-peer"],
        };
        CliResult r = Qana.Run(args);
        r.AssertOneLineError(1, "readout update");
        Assert.Equal("", r.Out);
    }

    /// <summary>An empty output path (often an unset shell variable: --json "$OUT") is bad usage, exit 2; it was an
    /// internal error (ArgumentException from Path.GetFullPath).</summary>
    [Theory]
    [InlineData("keygen")]
    [InlineData("sign")]
    [InlineData("export-onnx")]
    [InlineData("bench")]
    [InlineData("evaluate --json")]
    [InlineData("evaluate --report")]
    [InlineData("split")]
    [InlineData("classify")]
    public void An_empty_output_path_is_bad_usage(string verb)
    {
        string pkg = Package();
        string labels = Write("labels.csv", "image_id,lesion_id,dx\nISIC_0024306,HAM_1,nv\n"u8.ToArray());
        string images = Path.GetDirectoryName(ClassifyCommandTests.Jpegs(1)[0])!;
        string[] args = verb switch
        {
            "keygen" => ["keygen", "--role", "vendor", "--out", ""],
            "sign" => ["sign", "--key", Keygen(), pkg, "--out", ""],
            "export-onnx" => ["export-onnx", pkg, ""],
            "bench" => ["bench", "--model", pkg, "--json", ""],
            "evaluate --json" => ["evaluate", "--images", images, "--labels", labels, "--model", pkg, "--json", ""],
            "evaluate --report" => ["evaluate", "--images", images, "--labels", labels, "--model", pkg, "--report", ""],
            "split" => ["split", "--images", images, "--labels", labels, "--out", ""],
            _ => ["classify", ClassifyCommandTests.Jpegs(1)[0], "--model", pkg, "--saliency", ""],
        };
        CliResult r = Qana.Run(args);
        r.AssertOneLineError(2, "empty");
        Assert.DoesNotContain("internal error", r.Err);
    }

    private string Keygen()
    {
        string prefix = Path.Combine(_dir, "vendor");
        Assert.Equal(0, Qana.Run("keygen", "--role", "vendor", "--out", prefix).Code);
        return prefix + ".key";
    }
}
