using QanaEdge.Model.Graph;
using QanaEdge.Model.Packaging;

namespace QanaEdge.Model.Tests;

public class RoundTripTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(42)]
    public void WriteThenRead_GivesTheSameGraphAndManifest(int seed)
    {
        ModelPackage original = SmallPackages.Build(seed);
        byte[] bytes = PackageWriter.ToBytes(original);
        ModelPackage loaded = PackageReader.Load(bytes);

        AssertSame(original, loaded);
        Assert.Null(loaded.Signature);
        Assert.Equal(64, loaded.ContentSha256.Length);
        // Deterministic: the loaded package writes the same bytes.
        Assert.Equal(bytes, PackageWriter.ToBytes(loaded));
    }

    [Fact]
    public void SaveThenLoadFromFile_RoundTrips()
    {
        string dir = Directory.CreateTempSubdirectory("qana-rt").FullName;
        try
        {
            string path = Path.Combine(dir, "m.qana");
            ModelPackage original = SmallPackages.Build(3);
            PackageWriter.Save(original, path);
            AssertSame(original, PackageReader.Load(path));
            Assert.Single(Directory.GetFiles(dir));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void A_save_that_cannot_be_put_in_place_names_the_package_and_leaves_no_temporary_file()
    {
        string dir = Directory.CreateTempSubdirectory("qana-rt").FullName;
        try
        {
            // A folder where the package should go: the bytes are written, the rename into place is refused.
            string path = Path.Combine(dir, "m.qana");
            Directory.CreateDirectory(Path.Combine(path, "inside"));
            var e = Assert.ThrowsAny<IOException>(() => PackageWriter.Save(SmallPackages.Build(3), path));
            Assert.Contains(path, e.Message);
            Assert.DoesNotContain(".tmp", e.Message);
            Assert.Equal([path], Directory.GetFileSystemEntries(dir));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void ReadoutUpdate_RoundTrips()
    {
        ModelPackage update = SmallPackages.ReadoutUpdate();
        ModelPackage loaded = PackageReader.Load(PackageWriter.ToBytes(update));
        AssertSame(update, loaded);
        Assert.Equal(PackageKind.ReadoutUpdate, loaded.Manifest.Kind);
        Assert.Equal("qana-small-test", loaded.Manifest.BaseModelId);
    }

    [Fact]
    public void ProfileAndKind_AreStoredByName()
    {
        byte[] bytes = PackageWriter.ToBytes(SmallPackages.Build(1, QuantizationProfile.Akd1000));
        string json = System.Text.Encoding.UTF8.GetString(PackageBytes.Split(bytes).Json);
        Assert.Contains("\"profile\":\"akd1000\"", json);
        Assert.Contains("\"kind\":\"model\"", json);
        Assert.Contains("\"op\":\"depthwiseConv2d\"", json);
    }

    [Fact]
    public void Writer_RefusesAnInvalidPackage()
    {
        ModelPackage p = SmallPackages.Build();
        var bad = new ModelPackage
        {
            Manifest = p.Manifest,
            Graph = new ModelGraph { Tensors = p.Graph.Tensors, Nodes = p.Graph.Nodes, InputTensor = 0, LogitsTensor = 99, OutputTensor = 0 },
        };
        var e = Assert.Throws<PackageFormatException>(() => PackageWriter.ToBytes(bad));
        Assert.Contains("logits tensor", e.Message);
    }

    internal static void AssertSame(ModelPackage a, ModelPackage b)
    {
        ModelGraph x = a.Graph, y = b.Graph;
        Assert.Equal(x.InputTensor, y.InputTensor);
        Assert.Equal(x.LogitsTensor, y.LogitsTensor);
        Assert.Equal(x.OutputTensor, y.OutputTensor);
        Assert.Equal(x.Tensors.Length, y.Tensors.Length);
        for (int i = 0; i < x.Tensors.Length; i++)
        {
            TensorSpec s = x.Tensors[i], t = y.Tensors[i];
            Assert.Equal((s.Name, s.Height, s.Width, s.Channels, s.Type, s.Scale, s.ZeroPoint),
                         (t.Name, t.Height, t.Width, t.Channels, t.Type, t.Scale, t.ZeroPoint));
        }
        Assert.Equal(x.Nodes.Length, y.Nodes.Length);
        for (int i = 0; i < x.Nodes.Length; i++)
        {
            Node m = x.Nodes[i], n = y.Nodes[i];
            Assert.Equal((m.Name, m.Kind, m.Output, m.KernelHeight, m.KernelWidth, m.StrideHeight, m.StrideWidth, m.Padding),
                         (n.Name, n.Kind, n.Output, n.KernelHeight, n.KernelWidth, n.StrideHeight, n.StrideWidth, n.Padding));
            Assert.Equal((m.ClampMin, m.ClampMax, m.TimeSteps, m.Reparameterisation, m.Kernel),
                         (n.ClampMin, n.ClampMax, n.TimeSteps, n.Reparameterisation, n.Kernel));
            Assert.Equal(m.Inputs, n.Inputs);
            Assert.Equal(m.Weights, n.Weights);
            Assert.Equal(m.WeightScales, n.WeightScales);
            Assert.Equal(m.Bias, n.Bias);
            Assert.Equal(m.Table, n.Table);
            Assert.Equal(m.Thresholds, n.Thresholds);
        }

        ModelManifest p = a.Manifest, q = b.Manifest;
        Assert.Equal((p.ModelId, p.Version, p.CreatedUtc, p.Profile, p.Kind, p.BaseModelId, p.BaseModelVersion, p.ConversionSuccessRate),
                     (q.ModelId, q.Version, q.CreatedUtc, q.Profile, q.Kind, q.BaseModelId, q.BaseModelVersion, q.ConversionSuccessRate));
        Assert.Equal(p.Classes, q.Classes);
        Assert.Equal((p.Input.Height, p.Input.Width, p.Input.Channels), (q.Input.Height, q.Input.Width, q.Input.Channels));
        Assert.Equal(p.Input.ColorGains, q.Input.ColorGains);
        Assert.Equal(p.Layers.Length, q.Layers.Length);
        for (int i = 0; i < p.Layers.Length; i++)
            Assert.Equal((p.Layers[i].Name, p.Layers[i].Op, p.Layers[i].Scale, p.Layers[i].ZeroPoint, p.Layers[i].Reparameterisation, p.Layers[i].Kernel, p.Layers[i].NeedsDequantize),
                         (q.Layers[i].Name, q.Layers[i].Op, q.Layers[i].Scale, q.Layers[i].ZeroPoint, q.Layers[i].Reparameterisation, q.Layers[i].Kernel, q.Layers[i].NeedsDequantize));
        Assert.Equal(p.Metrics, q.Metrics);
        Assert.Equal(p.Provenance, q.Provenance);
        Calibration c = p.Calibration, d = q.Calibration;
        Assert.Equal((c.ReadoutWindow, c.Beta, c.TilingTau, c.ReferralThreshold, c.SaliencyFlatCv),
                     (d.ReadoutWindow, d.Beta, d.TilingTau, d.ReferralThreshold, d.SaliencyFlatCv));
        Assert.Equal(c.Thresholds, d.Thresholds);
        Assert.Equal(c.StepWeights, d.StepWeights);
        Assert.Equal(p.Golden.Length, q.Golden.Length);
        for (int i = 0; i < p.Golden.Length; i++)
        {
            Assert.Equal(p.Golden[i].Input, q.Golden[i].Input);
            Assert.Equal(p.Golden[i].ExpectedLogits, q.Golden[i].ExpectedLogits);
        }
    }
}
