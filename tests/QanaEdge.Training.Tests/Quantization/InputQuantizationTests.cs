using QanaEdge.Model;
using QanaEdge.Model.Packaging;
using QanaEdge.Runtime;
using QanaEdge.Training.Conversion;
using QanaEdge.Training.Data;
using QanaEdge.Training.Engine;
using QanaEdge.Training.Network;
using QanaEdge.Training.Pipeline;
using QanaEdge.Training.Quantization;
using QanaEdge.Training.Tests.Data;

namespace QanaEdge.Training.Tests.Quantization;

/// <summary>
/// A package whose input tensor is not quantized as scale 1/255, zero point −128 (q = p − 128): the device quantizes
/// pixels as that tensor says (<see cref="InputQuantizer"/>, q = clamp(zp + round(p/255/s))), and training, conversion,
/// the integer evaluation, the golden vectors and the readout learner's head inputs must do the same. The integer
/// engine, given the device's quantized input, is the oracle. Tiny networks on real HAM10000 JPEGs.
/// </summary>
public class InputQuantizationTests
{
    private const int Size = 16;

    private static readonly Lazy<(ImageSet Train, ImageSet Val)> Sets = new(() =>
    {
        var byClass = Ham10000Index.Load(Ham10000Location.Images, Ham10000Location.Labels)
            .GroupBy(r => r.ClassIndex).OrderBy(g => g.Key).Select(g => g.OrderBy(r => r.ImageId, StringComparer.Ordinal).ToList()).ToList();
        return (ImageSet.Load(byClass.SelectMany(g => g.Take(12)).ToList(), Size),
                ImageSet.Load(byClass.SelectMany(g => g.Skip(12).Take(6)).ToList(), Size));
    });

    internal static ImageSet Validation => Sets.Value.Val;

    /// <summary>Two float epochs, calibration and one QAT epoch of a tiny network on the given input grid.</summary>
    internal static QuantNet TrainSmall(QuantizationProfile profile, ActivationGrid? input, QanaOptions network)
    {
        var o = new TrainOptions { Network = network, Profile = profile, BatchSize = 16, Epochs = 2, QatEpochs = 1, Seed = 5, ZoomProbability = 0 };
        var (train, val) = Sets.Value;
        var net = new QanaNet(o.Network, o.Seed);
        var trainer = new Trainer(o);
        trainer.Fit("float", net, train, val, 2, 3e-3f, () => NetState.Capture(net), s => ((NetState)s).Restore(net), 5, 0);
        var q = QuantNetBuilder.FromFloat(net, new QuantScheme(profile), input);
        TrainingPipeline.Calibrate(q, train, trainer, train.Count);
        trainer.Fit("qat", q, train, val, 1, 2e-4f, () => 0, _ => { }, 5, 0);
        return q;
    }

    private static readonly QanaOptions NoSe = new() { InputSize = Size, StemChannels = 8, Blocks = [(16, 1), (24, 2)], DropoutRate = 0, Se = false };

    /// <summary>The device's int8 input for an image: what <c>InferencePipeline</c> does with the package's input tensor.</summary>
    private static sbyte[] DeviceInput(ModelPackage package, byte[] pixels)
    {
        var spec = package.Graph.Tensors[package.Graph.InputTensor];
        var q = new sbyte[pixels.Length];
        InputQuantizer.Quantize(pixels, q, spec.Scale, spec.ZeroPoint);
        return q;
    }

    /// <summary>
    /// Every tensor of the fake-quantized network, as codes on its grid, against the engine's bytes for the same image,
    /// counted per node; the converter writes the input tensor first and then one tensor per step, in order.
    /// </summary>
    internal static Dictionary<string, int> Mismatches(QuantNet q, ModelPackage package, ImageSet set)
    {
        var mismatches = new Dictionary<string, int>();
        using var engine = IntegerEngine.Create(package);
        var x = new Tensor(1, set.Size, set.Size, 3) { RequiresGrad = false };
        var tape = new Tape { Training = false };
        for (int i = 0; i < set.Count; i++)
        {
            engine.Run(DeviceInput(package, set.Pixels[i]));
            for (int j = 0; j < x.Length; j++) x.Data[j] = set.Pixels[i][j] * (1f / 255f); // as Trainer feeds it
            q.Forward(tape, x);
            for (int s = 0; s < q.Steps.Count; s++)
            {
                var t = q.Steps[s].Output;
                var bytes = engine.Activation(s + 1);
                Assert.Equal(t.Value.Length, bytes.Length);
                for (int j = 0; j < bytes.Length; j++)
                    if ((int)Math.Round(t.Value.Data[j] / t.Grid.Scale, MidpointRounding.AwayFromZero) + t.Grid.ZeroPoint != bytes[j])
                        mismatches[t.Name] = mismatches.GetValueOrDefault(t.Name) + 1;
            }
        }
        return mismatches;
    }

    public static TheoryData<QuantizationProfile, double, int> OtherGrids => new()
    {
        { QuantizationProfile.Paper8, 1.0 / 200, -128 },   // finer: p = 255 saturates at 127
        { QuantizationProfile.Paper8, 0.8 / 255, -128 },   // bright pixels saturate
        { QuantizationProfile.Paper8, 2.0 / 255, -64 },    // coarser, exact ties at every odd p
        { QuantizationProfile.Akd1000, 1.0 / 128, -128 },  // a power of two, as the chip prefers
        { QuantizationProfile.Akd1000, 1.0 / 64, -100 },
    };

    /// <summary>Before, the fake-quantized network fed p/255 to its first layer whatever its input grid said, and the
    /// stem already disagreed with the engine on every such grid.</summary>
    [Theory]
    [MemberData(nameof(OtherGrids))]
    public void The_fake_quantized_network_sees_the_engines_input_on_another_grid(QuantizationProfile profile, double scale, int zeroPoint)
    {
        var grid = new ActivationGrid(scale, zeroPoint, -128, 127);
        var q = TrainSmall(profile, grid, NoSe);
        var package = Converter.Convert(q, new ConversionInfo { ModelId = "input-grid" });
        var spec = package.Graph.Tensors[package.Graph.InputTensor];
        Assert.Equal((scale, zeroPoint), (spec.Scale, spec.ZeroPoint));
        Assert.Empty(Mismatches(q, package, Sets.Value.Val));
    }

    /// <summary>
    /// RunInteger (validation agreement, readout calibration), the golden self-test vectors and the readout learner's
    /// head inputs gave the engine p − 128 whatever the package's input tensor said: the device, which quantizes as the
    /// tensor says, computed other logits for the same images.
    /// </summary>
    [Fact]
    public void Integer_runs_golden_vectors_and_head_inputs_quantize_as_the_package_says()
    {
        var q = TrainSmall(QuantizationProfile.Paper8, new ActivationGrid(2.0 / 255, -64, -128, 127), NoSe with { PooledHead = true });
        var package = Converter.Convert(q, new ConversionInfo { ModelId = "input-grid" });
        var val = Sets.Value.Val;

        var (logits, _, _) = TrainingPipeline.RunInteger(package, val);
        int feature = QanaEdge.Imaging.HeadInfo.Find(package.Graph)!.InputTensor;
        var heads = IncrementalStage.HeadInputs(package, val);
        using var engine = IntegerEngine.Create(package, KernelMode.Optimized, new EngineOptions { RetainTensors = [feature] });
        for (int i = 0; i < val.Count; i++)
        {
            engine.Run(DeviceInput(package, val.Pixels[i]));
            Assert.Equal(engine.Logits.ToArray(), logits[i]);
            Assert.Equal(engine.Activation(feature).ToArray(), heads[i]);
        }

        var golden = TrainingPipeline.Golden(package, val, 4);
        Assert.Equal(4, golden.Length);
        for (int i = 0; i < golden.Length; i++)
        {
            Assert.Equal(DeviceInput(package, val.Pixels[i]), golden[i].Input);
            Assert.Equal(logits[i], golden[i].ExpectedLogits);
        }
    }

    /// <summary>The default grid is the one the device maps to q = p − 128, and on it the input passes unchanged.</summary>
    [Fact]
    public void The_default_input_grid_passes_the_images_unchanged()
    {
        var net = new QanaNet(NoSe, 1);
        var q = QuantNetBuilder.FromFloat(net, new QuantScheme(QuantizationProfile.Paper8));
        Assert.Equal(new ActivationGrid(1.0 / 255, -128, -128, 127), q.Input.Grid);
        var x = new Tensor(2, Size, Size, 3) { RequiresGrad = false };
        q.SetObserve(true); // a calibration pass: no grids yet
        q.Forward(new Tape { Training = false }, x);
        Assert.Same(x, q.Input.Value);
    }

    [Theory]
    [InlineData(0.0, -128, -128, 127)]
    [InlineData(double.NaN, -128, -128, 127)]
    [InlineData(1.0 / 255, 200, -128, 127)]
    [InlineData(1.0 / 255, 0, 0, 15)]  // the device's input codes are always int8
    public void An_input_grid_the_device_cannot_quantize_to_is_refused(double scale, int zeroPoint, int qmin, int qmax)
    {
        var net = new QanaNet(NoSe, 1);
        var e = Assert.Throws<ArgumentException>(() =>
            QuantNetBuilder.FromFloat(net, new QuantScheme(QuantizationProfile.Paper8), new ActivationGrid(scale, zeroPoint, qmin, qmax)));
        Assert.StartsWith("input quantization scale ", e.Message, StringComparison.Ordinal);
    }
}
