using QanaEdge.Model.Graph;
using QanaEdge.Model.Packaging;

namespace QanaEdge.Model.Tests;

public class ProfileCheckerTests
{
    /// <summary>The small package made to fit the akd1000 rules: after the stem, 4-bit weights, power-of-two
    /// scales, zero point 0 and 16 activation levels.</summary>
    private static ModelPackage Akd1000(Func<Node, Node>? tweak = null)
    {
        ModelPackage p = SmallPackages.Build(2, QuantizationProfile.Akd1000);
        ModelGraph g = p.Graph;
        int stemOut = g.Nodes[0].Output;
        var tensors = g.Tensors.Select((t, i) =>
            i == g.InputTensor || i == stemOut || i == g.LogitsTensor || i == g.OutputTensor ? t
            : new TensorSpec { Name = t.Name, Height = t.Height, Width = t.Width, Channels = t.Channels, Type = t.Type, Scale = 0.0625, ZeroPoint = 0 }).ToArray();
        var nodes = g.Nodes.Select((n, i) =>
        {
            bool first = i == 0;
            bool last = n.Output == g.LogitsTensor || n.Output == g.OutputTensor;
            Node c = Copy(n,
                weights: n.Weights is null || first ? n.Weights : n.Weights.Select(w => (sbyte)Math.Clamp((int)w, -8, 7)).ToArray(),
                scales: n.WeightScales?.Select(s => Math.Pow(2, Math.Round(Math.Log2(s)))).ToArray(),
                clampMin: first || last ? n.ClampMin : 0,
                clampMax: first || last ? n.ClampMax : 15,
                table: n.Table?.Select(v => (sbyte)Math.Clamp((v + 128) / 16, 0, 15)).ToArray());
            return tweak is null ? c : tweak(c);
        }).ToArray();
        var graph = new ModelGraph { Tensors = tensors, Nodes = nodes, InputTensor = g.InputTensor, LogitsTensor = g.LogitsTensor, OutputTensor = g.OutputTensor };
        var package = new ModelPackage { Manifest = p.Manifest, Graph = graph };
        PackageValidator.Validate(package);
        return package;
    }

    private static Node Copy(Node n, sbyte[]? weights, double[]? scales, int clampMin, int clampMax, sbyte[]? table) => new()
    {
        Name = n.Name, Kind = n.Kind, Inputs = n.Inputs, Output = n.Output,
        KernelHeight = n.KernelHeight, KernelWidth = n.KernelWidth, StrideHeight = n.StrideHeight, StrideWidth = n.StrideWidth, Padding = n.Padding,
        Weights = weights, WeightScales = scales, Bias = n.Bias, ClampMin = clampMin, ClampMax = clampMax, Table = table,
        TimeSteps = n.TimeSteps, Thresholds = n.Thresholds, Reparameterisation = n.Reparameterisation, Kernel = n.Kernel,
    };

    [Fact]
    public void ConformingGraph_HasNoViolations() => Assert.Empty(ProfileChecker.Check(Akd1000()));

    [Fact]
    public void EightBitWeightsAfterTheFirstLayer_AreReported()
    {
        var problems = ProfileChecker.Check(Akd1000(n => n.Name == "pw"
            ? Copy(n, n.Weights!.Select((w, i) => i == 0 ? (sbyte)9 : w).ToArray(), n.WeightScales, n.ClampMin, n.ClampMax, n.Table) : n));
        Assert.Equal(["node 'pw': 1 weights outside the 4-bit range [-8, 7]"], problems);
    }

    [Fact]
    public void NonPowerOfTwoWeightScale_AndWideActivation_AreReported()
    {
        var problems = ProfileChecker.Check(Akd1000(n => n.Name == "dw" ? Copy(n, n.Weights, [0.3], n.ClampMin, 16, n.Table) : n));
        Assert.Equal(2, problems.Count);
        Assert.Contains("node 'dw': 1 weight scales are not powers of two", problems);
        Assert.Contains("node 'dw': output spans 17 levels [0, 16], more than 4 bits", problems);
    }

    /// <summary>The converter writes the flatten with the default clamp [-128, 127] (a reshape cannot requantize,
    /// so it needs none). Its levels are those of its input, not of its clamp.</summary>
    [Fact]
    public void AReshapeWithTheDefaultClamp_HasItsInputsLevels()
    {
        Node Default(Node n) => Copy(n, n.Weights, n.WeightScales, sbyte.MinValue, sbyte.MaxValue, n.Table);
        Assert.Empty(ProfileChecker.Check(Akd1000(n => n.Name == "flatten" ? Default(n) : n)));

        // A wide input is still reported, at the node that widens it and at the reshape that passes it on.
        var problems = ProfileChecker.Check(Akd1000(n => n.Name == "flatten" ? Default(n)
            : n.Name == "se" ? Copy(n, n.Weights, n.WeightScales, 0, 16, n.Table) : n));
        Assert.Equal(["node 'se': output spans 17 levels [0, 16], more than 4 bits", "node 'flatten': output spans 17 levels [0, 16], more than 4 bits"], problems);

        // A clamp that keeps its input's quantization (here every activation has scale 1/16, zero point 0) copies too.
        Assert.Empty(ProfileChecker.Check(Akd1000(n => n.Name == "relu" ? Copy(n, n.Weights, n.WeightScales, 0, 127, n.Table) : n)));
    }

    [Fact]
    public void TheRandomPaper8Package_Fails()
    {
        var problems = ProfileChecker.Check(SmallPackages.Build());
        Assert.Contains(problems, p => p.Contains("zero point", StringComparison.Ordinal));
        Assert.DoesNotContain(problems, p => p.StartsWith("node 'stem': ", StringComparison.Ordinal) && p.Contains("4-bit", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData(1.0, true)]
    [InlineData(0.0625, true)]
    [InlineData(1024.0, true)]
    [InlineData(double.Epsilon, true)]
    [InlineData(0.1, false)]
    [InlineData(3.0, false)]
    [InlineData(0.0, false)]
    [InlineData(-0.5, false)]
    [InlineData(double.NaN, false)]
    public void PowerOfTwo(double value, bool expected) => Assert.Equal(expected, ProfileChecker.IsPowerOfTwo(value));
}
