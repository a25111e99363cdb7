using QanaEdge.Model;
using QanaEdge.Model.Packaging;
using QanaEdge.Runtime;
using QanaEdge.Training.Conversion;
using QanaEdge.Training.Engine;
using QanaEdge.Training.Network;
using QanaEdge.Training.Pipeline;
using QanaEdge.Training.Quantization;

namespace QanaEdge.Training.Tests.Quantization;

/// <summary>
/// Conversion of a small trained QANA: the integer engine agrees with the fake-quantized float network,
/// the package round-trips through the writer and reader, and the akd1000 profile passes the chip check.
/// </summary>
public class ConversionTests
{
    private const int Size = 16;

    /// <summary>Images with a class-dependent colour blob, so a few steps give a non-trivial network.</summary>
    private static ImageSet Synthetic(int count, ulong seed)
    {
        var rng = new Rng(seed);
        var pixels = new byte[count][]; var labels = new int[count]; var ids = new string[count];
        for (int i = 0; i < count; i++)
        {
            int label = i % Classes.Count;
            var img = new byte[Size * Size * 3];
            for (int p = 0; p < Size * Size; p++)
            {
                int y = p / Size, x = p % Size;
                bool blob = Math.Abs(y - 4 - label) < 3 && Math.Abs(x - 8) < 4;
                for (int c = 0; c < 3; c++)
                    img[p * 3 + c] = (byte)Math.Clamp((blob ? 60 + 25 * ((label + c) % 7) : 150) + rng.Next(40), 0, 255);
            }
            pixels[i] = img; labels[i] = label; ids[i] = $"syn{i}";
        }
        return new ImageSet(Size, pixels, labels, ids);
    }

    private static (QuantNet Net, Trainer Trainer, ImageSet Val) TrainSmall(QuantizationProfile profile, bool pooledHead = false)
    {
        var options = new TrainOptions
        {
            Network = new QanaOptions { InputSize = Size, StemChannels = 8, Blocks = [(16, 1), (24, 2)], DropoutRate = 0, PooledHead = pooledHead },
            Profile = profile, BatchSize = 16, Epochs = 2, QatEpochs = 1, Seed = 3,
        };
        var train = Synthetic(112, 1); var val = Synthetic(140, 2);
        var net = new QanaNet(options.Network, options.Seed);
        var trainer = new Trainer(options);
        trainer.Fit("float", net, train, val, 2, 3e-3f, () => NetState.Capture(net), s => ((NetState)s).Restore(net), 5, 0);
        var q = QuantNetBuilder.FromFloat(net, new QuantScheme(profile));
        TrainingPipeline.Calibrate(q, train, trainer, 112);
        trainer.Fit("qat", q, train, val, 1, 2e-4f, () => 0, _ => { }, 5, 0);
        return (q, trainer, val);
    }

    [Fact]
    public void Akd1000PackagePassesTheChipCheck()
    {
        var (q, _, _) = TrainSmall(QuantizationProfile.Akd1000);
        var package = Converter.Convert(q, new ConversionInfo { ModelId = "akd" });
        Assert.Equal(QuantizationProfile.Akd1000, package.Manifest.Profile);
        Assert.Empty(ProfileChecker.Check(package));
    }

    [Theory]
    [InlineData(QuantizationProfile.Paper8, false)]
    [InlineData(QuantizationProfile.Akd1000, false)]
    [InlineData(QuantizationProfile.Paper8, true)]
    [InlineData(QuantizationProfile.Akd1000, true)]
    public void IntegerEngineAgreesWithFakeQuantizedNetwork(QuantizationProfile profile, bool pooledHead)
    {
        var (q, trainer, val) = TrainSmall(profile, pooledHead);
        var fake = trainer.Predict(q, val);
        var package = Converter.Convert(q, new ConversionInfo { ModelId = "test" });
        Assert.Equal(1.0, package.Manifest.ConversionSuccessRate);
        Assert.All(package.Manifest.Layers, l => Assert.False(l.NeedsDequantize));
        var (logits, probs, _) = TrainingPipeline.RunInteger(package, val);
        int agree = 0;
        for (int i = 0; i < val.Count; i++)
            if (QanaEdge.Training.Evaluation.ClassificationMetrics.ArgMax(fake[i]) == QanaEdge.Training.Evaluation.ClassificationMetrics.ArgMax(probs[i])) agree++;
        Assert.True(agree >= 0.99 * val.Count, $"{profile}: {agree}/{val.Count} agree");
        // The fake-quantized logits are the integer logits, dequantized (up to ties at a rounding boundary).
        var fqLogits = trainer.PredictLogits(q, val);
        var grid = q.Logits.Grid;
        int exact = 0;
        for (int i = 0; i < val.Count; i++)
            for (int k = 0; k < Classes.Count; k++)
                if ((int)Math.Round(fqLogits[i][k] / grid.Scale, MidpointRounding.AwayFromZero) + grid.ZeroPoint == logits[i][k]) exact++;
        Assert.True(exact >= 0.98 * val.Count * Classes.Count, $"{exact} of {val.Count * Classes.Count} logits identical");
    }

    [Fact]
    public void PackageRoundTripsAndNamesItsReparameterisations()
    {
        var (q, _, _) = TrainSmall(QuantizationProfile.Paper8);
        var package = Converter.Convert(q, new ConversionInfo { ModelId = "roundtrip" });
        var back = PackageReader.Load(PackageWriter.ToBytes(package));
        Assert.Equal(package.Graph.Nodes.Length, back.Graph.Nodes.Length);
        Assert.Contains(back.Manifest.Layers, l => l.Reparameterisation.StartsWith("bn-fold", StringComparison.Ordinal));
        Assert.Contains(back.Graph.Nodes, n => n.Kind == Model.Graph.OpKind.SpikingReadout);
        Assert.Equal(package.Graph.Nodes.Select(n => n.Weights?.Length ?? 0), back.Graph.Nodes.Select(n => n.Weights?.Length ?? 0));
    }

    [Fact]
    public void A_pooled_head_reads_the_global_average_and_keeps_its_map_for_grad_cam()
    {
        var (q, _, val) = TrainSmall(QuantizationProfile.Paper8, pooledHead: true);
        var package = Converter.Convert(q, new ConversionInfo { ModelId = "pooled" });
        var head = Assert.IsType<QanaEdge.Imaging.HeadInfo>(QanaEdge.Imaging.HeadInfo.Find(package.Graph));
        Assert.True(head.Pooled);
        // The map is the last block's 8×8×24 output; the head reads its 24-channel average.
        Assert.Equal((8, 8, 24), (head.Feature.Height, head.Feature.Width, head.Feature.Channels));
        Assert.Equal(24, head.RowLength);
        Assert.Equal(Classes.Count * 24, head.Head.Weights!.Length);
        var pool = package.Graph.Nodes.Single(n => n.Output == head.InputTensor);
        Assert.Equal(Model.Graph.OpKind.GlobalAvgPool, pool.Kind);
        Assert.Equal(head.FeatureTensor, pool.Inputs[0]);
        Assert.Contains(package.Manifest.Layers, l => l.Reparameterisation == "gap-scale-fold" && l.Name == "head.gap");
        // The readout learner's inputs are the pooled vectors, one per image.
        var inputs = IncrementalStage.HeadInputs(package, val);
        Assert.Equal(val.Count, inputs.Length);
        Assert.All(inputs, x => Assert.Equal(24, x.Length));
    }

    /// <summary>
    /// A channel whose weights are all about zero has its weight scale at the floor (1e-8/127), so an ordinary bias
    /// is far more steps of s_in·s_w than an int32 bias holds: the clamp would make the channel output about 0 instead
    /// of its bias. Conversion refuses the model and names the layer and the channel; the clamp itself is unchanged.
    /// </summary>
    [Fact]
    public void ConversionRefusesABiasTheInt32RangeCannotHold()
    {
        var options = new TrainOptions { Network = new QanaOptions { InputSize = Size, StemChannels = 8, Blocks = [(16, 1)], PooledHead = true }, BatchSize = 16 };
        var net = new QanaNet(options.Network, 1);
        var q = QuantNetBuilder.FromFloat(net, new QuantScheme(QuantizationProfile.Paper8));
        TrainingPipeline.Calibrate(q, Synthetic(32, 1), new Trainer(options), 32);
        var head = (WeightedStep)q.Steps.Single(s => s.Name == "head");
        Assert.Empty(head.SaturatedBiases());
        Converter.Convert(q, new ConversionInfo { ModelId = "fits" }); // the untouched network converts

        int cout = head.OutChannels;
        for (int i = 3; i < head.MasterWeight.Length; i += cout) head.MasterWeight.Value[i] = 1e-12f;
        head.MasterBias.Value[3] = 2f;
        var (_, bias, _) = head.QuantizedParameters();
        Assert.Equal(WeightedStep.BiasMax, bias[3]); // what training and the engine would compute with
        var saturated = Assert.Single(head.SaturatedBiases());
        Assert.Equal(3, saturated.Channel);
        var e = Assert.Throws<ConversionException>(() => Converter.Convert(q, new ConversionInfo { ModelId = "saturated" }));
        Assert.StartsWith("layer head, channel 3: bias 2 is ", e.Message);
        Assert.Contains("outside the int32 bias range", e.Message);
    }

    [Fact]
    public void ConversionRefusesAnUnrunNetwork()
    {
        var net = new QanaNet(new QanaOptions { InputSize = Size, StemChannels = 8, Blocks = [(16, 1)] }, 1);
        var q = QuantNetBuilder.FromFloat(net, new QuantScheme(QuantizationProfile.Paper8));
        Assert.Throws<ConversionException>(() => Converter.Convert(q, new ConversionInfo { ModelId = "x" }));
    }
}

/// <summary>Fake quantization rounds exactly as the integer engine requantizes: half away from zero.</summary>
public class QuantMathTests
{
    [Theory]
    [InlineData(0.5, 1)]
    [InlineData(1.5, 2)]
    [InlineData(2.5, 3)]   // banker's rounding would give 2
    [InlineData(-0.5, -1)]
    [InlineData(-2.5, -3)]
    [InlineData(300, 127)] // saturates
    [InlineData(-300, -128)]
    public void TiesRoundAwayFromZero(double x, int expected)
    {
        Assert.Equal(expected, QuantMath.Quantize(x, 1.0, 0, -128, 127));
        Assert.Equal(expected, QuantMath.FakeQuantize((float)x, 1f, 0, -128, 127));
    }

    [Fact]
    public void Akd1000GridsArePowersOfTwoAndFourBit()
    {
        var s = new QuantScheme(QuantizationProfile.Akd1000);
        var relu6 = s.Activation(0, 6);
        Assert.Equal((0.5, 0, 0, 15), (relu6.Scale, relu6.ZeroPoint, relu6.QMin, relu6.QMax));
        var signed = s.Activation(-3, 1.2);
        Assert.True(ProfileChecker.IsPowerOfTwo(signed.Scale));
        Assert.Equal((0, -8, 7), (signed.ZeroPoint, signed.QMin, signed.QMax));
        Assert.True(ProfileChecker.IsPowerOfTwo(s.WeightScale(0.37, firstLayer: false)));
        Assert.Equal(7, s.WeightQMax(false));
        Assert.Equal(127, s.WeightQMax(true));
    }
}
