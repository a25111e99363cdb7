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

    /// <summary>
    /// A model id may be 256 characters long; the update's id is the model's with <c>-readout</c> only where that fits,
    /// else the model's own. Always suffixed, an id of 249 to 256 characters gave an update the validator refused, so no
    /// readout of such a model could be made. The update still names its model in full and applies to it.
    /// </summary>
    [Theory]
    [InlineData(248, "-readout")]
    [InlineData(249, "")]
    [InlineData(256, "")]
    public void Create_gives_a_model_with_an_id_of_any_valid_length_a_valid_update(int idLength, string suffix)
    {
        ModelPackage small = SmallPackages.Build(1);
        string id = new('m', idLength);
        var json = System.Text.Json.JsonSerializer.SerializeToNode(small.Manifest)!;
        json["ModelId"] = id;
        var model = new ModelPackage { Manifest = System.Text.Json.JsonSerializer.Deserialize<ModelManifest>(json)!, Graph = small.Graph };
        PackageValidator.Validate(model);

        Node head = ReadoutUpdates.Head(model);
        ModelPackage update = ReadoutUpdates.Create(model, "1.0.1-r1", head.Weights!, head.WeightScales!, head.Bias!);

        Assert.Equal(id + suffix, update.Manifest.ModelId);
        Assert.Equal(id, update.Manifest.BaseModelId);
        Assert.Equal(id, ReadoutUpdates.Apply(model, PackageReader.Load(PackageWriter.ToBytes(update))).Manifest.ModelId);
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
    public void BackboneDigest_survives_a_readout_update_and_changes_with_any_backbone_weight_or_the_input_contract()
    {
        var (model, update) = ModelAndUpdate();
        string digest = ReadoutUpdates.BackboneDigest(model);
        Assert.Matches("^[0-9a-f]{64}$", digest);
        Assert.Equal(digest, ReadoutUpdates.BackboneDigest(ReadoutUpdates.Apply(model, update)));
        Assert.Equal(digest, ReadoutUpdates.BackboneDigest(PackageReader.Load(PackageWriter.ToBytes(model))));

        // One weight of the first convolution one step away: another backbone, whose head inputs teach nothing here.
        Node first = model.Graph.Nodes.First(n => n.Weights is not null);
        var weights = (sbyte[])first.Weights!.Clone();
        weights[0] = (sbyte)(weights[0] == 127 ? 126 : weights[0] + 1);
        var nodes = model.Graph.Nodes.Select(n => n != first ? n : new Node
        {
            Name = n.Name, Kind = n.Kind, Inputs = n.Inputs, Output = n.Output, KernelHeight = n.KernelHeight, KernelWidth = n.KernelWidth,
            StrideHeight = n.StrideHeight, StrideWidth = n.StrideWidth, Padding = n.Padding, Weights = weights, WeightScales = n.WeightScales,
            Bias = n.Bias, ClampMin = n.ClampMin, ClampMax = n.ClampMax, Table = n.Table, Reparameterisation = n.Reparameterisation, Kernel = n.Kernel,
        }).ToArray();
        var changed = new ModelPackage
        {
            Manifest = model.Manifest,
            Graph = new ModelGraph { Tensors = model.Graph.Tensors, Nodes = nodes, InputTensor = model.Graph.InputTensor, LogitsTensor = model.Graph.LogitsTensor, OutputTensor = model.Graph.OutputTensor },
        };
        Assert.NotEqual(digest, ReadoutUpdates.BackboneDigest(changed));

        // Other colour gains change what the backbone sees, so its head inputs too.
        ModelManifest m = model.Manifest;
        var regained = new ModelPackage
        {
            Graph = model.Graph,
            Manifest = new ModelManifest
            {
                ModelId = m.ModelId, Version = m.Version, CreatedUtc = m.CreatedUtc, Classes = m.Classes, Profile = m.Profile, Layers = m.Layers,
                Input = new InputSpec { Height = m.Input.Height, Width = m.Input.Width, Channels = m.Input.Channels, ColorGains = [1.1f, 1f, 0.9f], Crop = m.Input.Crop },
                ConversionSuccessRate = m.ConversionSuccessRate, Metrics = m.Metrics, Golden = m.Golden, Provenance = m.Provenance, Calibration = m.Calibration,
            },
        };
        Assert.NotEqual(digest, ReadoutUpdates.BackboneDigest(regained));
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
    public void Apply_RefusesAnUpdateWithTwoDenseNodes_WithOurException()
    {
        // A valid update graph (dense, dense, readout) that is no single head: refused as a package error,
        // not as an InvalidOperationException from looking for the one dense node.
        ModelPackage model = SmallPackages.Build(1);
        ModelPackage update = SmallPackages.ReadoutUpdate();
        ModelGraph ug = update.Graph;
        var twoDense = new ModelPackage
        {
            Manifest = update.Manifest,
            Graph = new ModelGraph
            {
                Tensors =
                [
                    ug.Tensors[0], ug.Tensors[1], ug.Tensors[2],
                    new TensorSpec { Name = "hidden", Height = 1, Width = 1, Channels = 16, Scale = 0.05, ZeroPoint = 0 },
                ],
                Nodes =
                [
                    new Node { Name = "pre", Kind = OpKind.Dense, Inputs = [0], Output = 3, Weights = new sbyte[16 * 128], WeightScales = [0.004], Bias = new int[16] },
                    new Node { Name = "head", Kind = OpKind.Dense, Inputs = [3], Output = 1, Weights = new sbyte[7 * 16], WeightScales = [0.004], Bias = new int[7] },
                    ug.Nodes[1],
                ],
                InputTensor = 0, LogitsTensor = 1, OutputTensor = 2,
            },
        };
        PackageValidator.Validate(twoDense);
        var e = Assert.Throws<PackageFormatException>(() => ReadoutUpdates.Apply(model, twoDense));
        Assert.Contains("must hold exactly one dense node, producing the logits (it holds 2 dense nodes)", e.Message);
    }

    [Fact]
    public void Apply_RefusesAnotherNumberOfClasses_CountingElements()
    {
        ModelPackage model = SmallPackages.Build(1);
        ModelPackage update = SmallPackages.ReadoutUpdate();
        ModelGraph ug = update.Graph;
        ModelManifest um = update.Manifest;
        var eight = new ModelPackage
        {
            Manifest = new ModelManifest
            {
                ModelId = um.ModelId, Version = um.Version, Kind = um.Kind, BaseModelId = um.BaseModelId, BaseModelVersion = um.BaseModelVersion,
                Classes = [.. um.Classes, "extra"], Input = um.Input, Profile = um.Profile,
            },
            Graph = new ModelGraph
            {
                Tensors =
                [
                    ug.Tensors[0],
                    new TensorSpec { Name = "logits", Height = 1, Width = 1, Channels = 8, Scale = 0.1, ZeroPoint = -10 },
                    new TensorSpec { Name = "spikes", Height = 1, Width = 1, Channels = 8, Scale = 1, ZeroPoint = 0, Type = DataType.Int32 },
                ],
                Nodes =
                [
                    new Node { Name = "head", Kind = OpKind.Dense, Inputs = [0], Output = 1, Weights = new sbyte[8 * 128], WeightScales = [0.004], Bias = new int[8] },
                    new Node { Name = "readout", Kind = OpKind.SpikingReadout, Inputs = [1], Output = 2, TimeSteps = 16, Thresholds = [64, 64, 64, 64, 64, 64, 64, 64] },
                ],
                InputTensor = 0, LogitsTensor = 1, OutputTensor = 2,
            },
        };
        var e = Assert.Throws<PackageFormatException>(() => ReadoutUpdates.Apply(model, eight));
        Assert.Contains("8 logits, the model has 7", e.Message);
    }

    /// <summary>
    /// The update's logits mean its own classes, in its own order; the result keeps the model's class names. An update
    /// whose classes are the model's in another order (made against another build of the model, or by a tool that
    /// ordered them differently) used to apply, since only their count was compared, and every result after it carried
    /// the wrong names: a melanoma's score reported as a naevus's.
    /// </summary>
    [Fact]
    public void Apply_RefusesAnUpdateWhoseClassesDifferFromTheModels()
    {
        ModelPackage model = SmallPackages.Build(1);
        ModelPackage update = SmallPackages.ReadoutUpdate();
        ModelManifest um = update.Manifest;
        string[] swapped = [.. um.Classes];
        (swapped[4], swapped[5]) = (swapped[5], swapped[4]);   // mel and nv
        var reordered = new ModelPackage
        {
            Manifest = new ModelManifest
            {
                ModelId = um.ModelId, Version = um.Version, Kind = um.Kind, BaseModelId = um.BaseModelId, BaseModelVersion = um.BaseModelVersion,
                Classes = swapped, Input = um.Input, Profile = um.Profile,
            },
            Graph = update.Graph,
        };
        PackageValidator.Validate(reordered);
        var e = Assert.Throws<PackageFormatException>(() => ReadoutUpdates.Apply(model, reordered));
        Assert.Contains("classes", e.Message);
        Assert.Throws<PackageFormatException>(() => ReadoutUpdates.ApplyOverEarlierBase(model, reordered));
        ReadoutUpdates.Apply(model, update);
    }

    [Fact]
    public void Create_RefusesWrongHeadShapes()
    {
        ModelPackage model = SmallPackages.Build(1);
        Assert.Throws<PackageFormatException>(() => ReadoutUpdates.Create(model, "x", new sbyte[10], [0.1], new int[7]));
        Assert.Throws<PackageFormatException>(() => ReadoutUpdates.Create(model, "x", new sbyte[7 * 128], [0.1], new int[6]));
    }
}
