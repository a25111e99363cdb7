using QanaEdge.Model;
using QanaEdge.Model.Packaging;
using QanaEdge.Training.Conversion;
using QanaEdge.Training.Data;
using QanaEdge.Training.Network;
using QanaEdge.Training.Pipeline;
using QanaEdge.Training.Quantization;
using QanaEdge.Training.Tests.Data;

namespace QanaEdge.Training.Tests.Quantization;

/// <summary>
/// The fake-quantized network is the integer graph: after two float epochs, calibration and a QAT epoch on real JPEGs,
/// every tensor of every node, as codes on its grid, equals the engine's bytes for every validation image. The tiny
/// networks cover Ghost blocks with stride 1 and 2 (Concat of two grids), SA-ECA (a full-shape gate), the residual Add
/// of two grids, the SE block (GAP, dense, sigmoid table, a per-channel gate), the pooled head's GAP and the flattened
/// head, per-channel weight scales everywhere, and the separable blocks of the ablation baseline.
/// </summary>
public class EngineAgreementTests
{
    private const int Size = 16;

    public static TheoryData<QuantizationProfile, bool, bool> Networks => new()
    {
        { QuantizationProfile.Paper8, false, false },
        { QuantizationProfile.Paper8, true, false },
        { QuantizationProfile.Akd1000, false, false },
        { QuantizationProfile.Akd1000, true, false },
        { QuantizationProfile.Paper8, true, true },
        { QuantizationProfile.Akd1000, true, true },
    };

    [Theory]
    [MemberData(nameof(Networks))]
    public void Every_tensor_is_the_engines(QuantizationProfile profile, bool pooledHead, bool baseline)
    {
        var shape = baseline ? QanaOptions.Baseline : new QanaOptions();
        var network = shape with { InputSize = Size, StemChannels = 8, Blocks = [(16, 1), (24, 2)], DropoutRate = 0, PooledHead = pooledHead };
        var q = InputQuantizationTests.TrainSmall(profile, null, network);
        // The baseline's head trains unquantized and is quantized at conversion ("head quantized after training"):
        // compare the network as converted.
        if (baseline) ((WeightedStep)q.Steps[^1]).QuantizeWeights = true;
        var package = Converter.Convert(q, new ConversionInfo { ModelId = "agreement" });
        var mismatches = InputQuantizationTests.Mismatches(q, package, InputQuantizationTests.Validation);
        Assert.True(mismatches.Count == 0, string.Join(", ", mismatches.Select(kv => $"{kv.Key}: {kv.Value} values differ")));
    }

    private static readonly Lazy<ImageSet> FullSizeImages = new(() =>
        ImageSet.Load(Ham10000Index.Load(Ham10000Location.Images, Ham10000Location.Labels).Take(64).ToList(), 64));

    /// <summary>
    /// The shipped shape at 64×64 (48 to 128 channels, so larger accumulators and more near-ties than the tiny
    /// networks), untrained: batch-norm statistics from two batches of real images, then calibration. The residual Add
    /// of block 1 was the first node to differ on paper8 grids, when the fake quantizer rounded the float sum once.
    /// </summary>
    [Theory]
    [InlineData(QuantizationProfile.Paper8)]
    [InlineData(QuantizationProfile.Akd1000)]
    public void Every_tensor_of_a_full_size_network_is_the_engines(QuantizationProfile profile)
    {
        var images = FullSizeImages.Value;
        var o = new TrainOptions { Network = new QanaOptions { PooledHead = true }, Profile = profile, BatchSize = 32 };
        var net = new QanaNet(o.Network, 1);
        var trainer = new Trainer(o);
        trainer.RecalibrateBatchNorm(net, images, 2);
        var q = QuantNetBuilder.FromFloat(net, new QuantScheme(profile));
        TrainingPipeline.Calibrate(q, images, trainer, images.Count);
        var package = Converter.Convert(q, new ConversionInfo { ModelId = "agreement" });
        var mismatches = InputQuantizationTests.Mismatches(q, package, images);
        Assert.True(mismatches.Count == 0, string.Join(", ", mismatches.Select(kv => $"{kv.Key}: {kv.Value} values differ")));
    }

    /// <summary>The same on another input grid, with the SE block and the pooled head.</summary>
    [Theory]
    [InlineData(QuantizationProfile.Paper8, 2.0 / 255, -64)]
    [InlineData(QuantizationProfile.Akd1000, 1.0 / 128, -128)]
    public void Every_tensor_is_the_engines_on_another_input_grid(QuantizationProfile profile, double scale, int zeroPoint)
    {
        var network = new QanaOptions { InputSize = Size, StemChannels = 8, Blocks = [(16, 1), (24, 2)], DropoutRate = 0, PooledHead = true };
        var q = InputQuantizationTests.TrainSmall(profile, new ActivationGrid(scale, zeroPoint, -128, 127), network);
        var package = Converter.Convert(q, new ConversionInfo { ModelId = "agreement" });
        var mismatches = InputQuantizationTests.Mismatches(q, package, InputQuantizationTests.Validation);
        Assert.True(mismatches.Count == 0, string.Join(", ", mismatches.Select(kv => $"{kv.Key}: {kv.Value} values differ")));
    }
}
