using QanaEdge.Model.Graph;
using QanaEdge.Model.Packaging;

namespace QanaEdge.Model.Tests;

public class ReadoutUpdateTests
{
    private static (ModelPackage Model, ModelPackage Update) ModelAndUpdate()
    {
        ModelPackage model = SmallPackages.Build(1);
        var w = new sbyte[7 * 128];
        for (int i = 0; i < w.Length; i++) w[i] = (sbyte)(i % 17 - 8);
        ModelPackage update = ReadoutUpdates.Create(model, "1.0.1-r1", w, [0.002], [1, 2, 3, 4, 5, 6, 7], thresholds: [50, 50, 50, 50, 50, 50, 50]);
        return (model, update);
    }

    [Fact]
    public void Create_MakesASignableUpdate_ThatRoundTrips()
    {
        var (_, update) = ModelAndUpdate();
        Assert.Equal(PackageKind.ReadoutUpdate, update.Manifest.Kind);
        Assert.Equal("qana-small-test", update.Manifest.BaseModelId);
        Assert.Equal("1.0.1", update.Manifest.BaseModelVersion);
        RoundTripTests.AssertSame(update, PackageReader.Load(PackageWriter.ToBytes(update)));
        using var learner = SigningKey.Generate(SignerRole.Learner);
        var trust = new TrustStore([learner.PublicKey]);
        Assert.True(PackageVerifier.Verify(PackageSigner.Sign(PackageWriter.ToBytes(update), learner), trust).IsValid);
    }

    [Fact]
    public void Apply_ReplacesOnlyTheHeadAndReadout()
    {
        var (model, update) = ModelAndUpdate();
        ModelPackage applied = ReadoutUpdates.Apply(model, update);
        Assert.Equal("1.0.1-r1", applied.Manifest.Version);
        Assert.Equal(PackageKind.Model, applied.Manifest.Kind);
        Assert.Empty(applied.Manifest.Golden);
        Node head = ReadoutUpdates.Head(applied);
        Assert.Equal(update.Graph.Nodes[0].Weights, head.Weights);
        Assert.Equal([1, 2, 3, 4, 5, 6, 7], head.Bias!);
        Assert.Equal([50, 50, 50, 50, 50, 50, 50], applied.Graph.Nodes.Single(n => n.Kind == OpKind.SpikingReadout).Thresholds!);
        // Every other node is untouched.
        for (int i = 0; i < model.Graph.Nodes.Length; i++)
            if (model.Graph.Nodes[i].Kind is not (OpKind.Dense or OpKind.SpikingReadout))
                Assert.Same(model.Graph.Nodes[i], applied.Graph.Nodes[i]);
        PackageReader.Load(PackageWriter.ToBytes(applied));
    }

    [Fact]
    public void Apply_RefusesAnUpdateForAnotherModelOrVersion()
    {
        var (_, update) = ModelAndUpdate();
        ModelPackage other = SmallPackages.Build(2); // version 1.0.2
        var e = Assert.Throws<PackageFormatException>(() => ReadoutUpdates.Apply(other, update));
        Assert.Contains("is for qana-small-test 1.0.1", e.Message);
        Assert.Throws<PackageFormatException>(() => ReadoutUpdates.Apply(update, update));
    }

    [Fact]
    public void Create_RefusesWrongHeadShapes()
    {
        ModelPackage model = SmallPackages.Build(1);
        Assert.Throws<PackageFormatException>(() => ReadoutUpdates.Create(model, "x", new sbyte[10], [0.1], new int[7]));
        Assert.Throws<PackageFormatException>(() => ReadoutUpdates.Create(model, "x", new sbyte[7 * 128], [0.1], new int[6]));
    }
}
