using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using QanaEdge.Model.Graph;
using QanaEdge.Model.Onnx;
using QanaEdge.Model.Packaging;
using QanaEdge.Model.Tests;
using QanaEdge.Runtime;

namespace QanaEdge.Cli.Tests;

/// <summary>
/// The ONNX export run by ONNX Runtime (the runtime <c>qana bench</c> measures it with) against the runtime's own
/// dequantized oracle, <see cref="FloatInterpreter"/> without rounding, fed the int8 input the device makes from the
/// same pixels (<see cref="InputQuantizer"/>): only float32 against double may separate them.
/// </summary>
public sealed class OnnxPeerTests
{
    /// <summary>The small package with its input tensor quantized as given (the rest of the graph unchanged).</summary>
    private static ModelPackage WithInput(double scale, int zeroPoint)
    {
        ModelPackage p = SmallPackages.Build(1);
        ModelGraph g = p.Graph;
        TensorSpec[] tensors = [.. g.Tensors];
        TensorSpec input = tensors[g.InputTensor];
        tensors[g.InputTensor] = new TensorSpec
        {
            Name = input.Name, Height = input.Height, Width = input.Width, Channels = input.Channels, Scale = scale, ZeroPoint = zeroPoint,
        };
        return new ModelPackage
        {
            Manifest = p.Manifest,
            Graph = new ModelGraph { Tensors = tensors, Nodes = g.Nodes, InputTensor = g.InputTensor, LogitsTensor = g.LogitsTensor, OutputTensor = g.OutputTensor },
        };
    }

    /// <summary>
    /// Pixels are even so that an input scale of 2/255 holds every one exactly: the device's int8 input then means
    /// exactly pixel/255, the export's input. The export used to map its input as if the engine were always given
    /// q = p − 128 (true of scale 1/255 and zero point −128 only), so for any other input quantization its network saw
    /// another image than the device's: here every input doubled.
    /// </summary>
    [Theory]
    [InlineData(1.0 / 255, -128)]
    [InlineData(2.0 / 255, -128)]
    [InlineData(2.0 / 255, -100)]
    public void Export_run_by_OnnxRuntime_matches_the_dequantized_oracle_on_the_devices_input(double scale, int zeroPoint)
    {
        ModelPackage package = WithInput(scale, zeroPoint);
        TensorSpec spec = package.Graph.Tensors[package.Graph.InputTensor];
        int h = spec.Height, w = spec.Width, c = spec.Channels;
        var rng = new Random(5);
        var pixels = new byte[spec.Length];
        for (int i = 0; i < pixels.Length; i++) pixels[i] = (byte)(2 * rng.Next(0, 128));

        var q = new sbyte[pixels.Length];
        InputQuantizer.Quantize(pixels, q, spec.Scale, spec.ZeroPoint);
        for (int i = 0; i < q.Length; i++) Assert.Equal(pixels[i] / 255.0, spec.Scale * (q[i] - spec.ZeroPoint), 1e-12);
        double[] expected = new FloatInterpreter(package).Run(q, fakeQuantize: false).ToArray();

        var nchw = new float[pixels.Length];
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                for (int ch = 0; ch < c; ch++)
                    nchw[(ch * h + y) * w + x] = pixels[(y * w + x) * c + ch] / 255f;
        using var session = new InferenceSession(OnnxExporter.ToBytes(package));
        using var results = session.Run([NamedOnnxValue.CreateFromTensor("input", new DenseTensor<float>(nchw, [1, c, h, w]))]);
        float[] onnx = results.First().AsTensor<float>().ToArray();

        Assert.Equal(expected.Length, onnx.Length);
        TensorSpec logits = package.Graph.Tensors[package.Graph.LogitsTensor];
        double lo = logits.Scale * (-128 - logits.ZeroPoint), hi = logits.Scale * (127 - logits.ZeroPoint);
        Assert.Contains(expected, v => v > lo + 1e-3 && v < hi - 1e-3); // not every logit at a clamp
        for (int k = 0; k < expected.Length; k++)
            Assert.True(Math.Abs(onnx[k] - expected[k]) <= 1e-4 + 1e-4 * Math.Abs(expected[k]), $"logit {k}: onnx {onnx[k]}, oracle {expected[k]}");
    }
}
