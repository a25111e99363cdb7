using QanaEdge.Model;
using QanaEdge.Model.Packaging;
using QanaEdge.Training.Conversion;
using QanaEdge.Training.Network;
using QanaEdge.Training.Quantization;

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
