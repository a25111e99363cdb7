using QanaEdge.Model;
using QanaEdge.Model.Graph;
using QanaEdge.Model.Packaging;
using QanaEdge.Training.Quantization;

namespace QanaEdge.Training.Conversion;

/// <summary>Conversion could not express a node in integers (it would need a float dequantize).</summary>
public sealed class ConversionException(string message) : Exception(message);

/// <summary>Calibration and provenance the converter writes into the manifest.</summary>
public sealed record ConversionInfo
{
    public required string ModelId { get; init; }
    public string Version { get; init; } = "1.0.0";
    public float[] ColorGains { get; init; } = [1f, 1f, 1f];
    /// <summary>Readout window T and the (equal) IF threshold θ; T = θ = 255 makes the spike count equal d = q + 128.</summary>
    public int ReadoutWindow { get; init; } = 255;
    public int Threshold { get; init; } = 255;
    public double TilingTau { get; init; } = 0.0;
    public double ReferralThreshold { get; init; } = 0.5;
    public double SaliencyFlatCv { get; init; } = 0.15;
    public Dictionary<string, double> Metrics { get; init; } = [];
    public Dictionary<string, string> Provenance { get; init; } = [];
    public GoldenVector[] Golden { get; init; } = [];
}

/// <summary>
/// Translates a calibrated fake-quantized network into the integer graph, one node per step: weights to
/// symmetric int8 per output channel in the IR layouts, biases to int32 at s_in·s_w, sigmoids to 256-entry
/// tables computed from the input grid, bounded activations to fused clamps, then the spiking readout.
/// Every node must be integer-only; one that is not makes the conversion fail (success rate &lt; 1 is refused).
/// </summary>
public static class Converter
{
    public static ModelPackage Convert(QuantNet net, ConversionInfo info)
    {
        var tensors = new List<TensorSpec>();
        var index = new Dictionary<QTensor, int>();
        int Add(QTensor t, DataType type = DataType.Int8)
        {
            tensors.Add(new TensorSpec
            {
                Name = t.Name, Height = t.Height, Width = t.Width, Channels = t.Channels, Type = type,
                Scale = t.Grid.Scale, ZeroPoint = t.Grid.ZeroPoint,
            });
            index[t] = tensors.Count - 1;
            return tensors.Count - 1;
        }
        if (net.Input.Value is null) throw new ConversionException("run the network once before converting (shapes are unknown)");
        int input = Add(net.Input);
        var nodes = new List<Node>();
        var records = new List<LayerRecord>();
        int dequantize = 0;
        foreach (var step in net.Steps)
        {
            int output = Add(step.Output);
            int[] inputs = step.Inputs.Select(t => index[t]).ToArray();
            var (cmin, cmax) = step.Output.QuantClamp;
            if (step.Kind == OpKind.Reshape) (cmin, cmax) = step.Inputs[0].QuantClamp; // a view: the input's range
            Node node = step switch
            {
                WeightedStep w => WeightedNode(w, inputs, output, cmin, cmax),
                _ => step.Kind switch
                {
                    OpKind.Sigmoid => new Node
                    {
                        Name = step.Name, Kind = OpKind.Sigmoid, Inputs = inputs, Output = output,
                        Table = SigmoidTable(step.Inputs[0].Grid, step.Output.Grid, cmin, cmax), ClampMin = cmin, ClampMax = cmax,
                        Reparameterisation = step.Reparameterisation, Kernel = "lut-256",
                    },
                    OpKind.Concat or OpKind.Add or OpKind.Mul or OpKind.GlobalAvgPool or OpKind.Reshape => new Node
                    {
                        Name = step.Name, Kind = step.Kind, Inputs = inputs, Output = output, ClampMin = cmin, ClampMax = cmax,
                        Reparameterisation = step.Reparameterisation, Kernel = step.KernelName,
                    },
                    _ => throw new ConversionException($"{step.Name}: {step.Kind} has no integer form"),
                },
            };
            bool needsDequantize = !double.IsFinite(step.Output.Grid.Scale) || step.Output.Grid.Scale <= 0;
            if (needsDequantize) dequantize++;
            nodes.Add(node);
            records.Add(new LayerRecord
            {
                Name = node.Name, Op = node.Kind.ToString(), Scale = step.Output.Grid.Scale, ZeroPoint = step.Output.Grid.ZeroPoint,
                Reparameterisation = node.Reparameterisation, Kernel = node.Kernel, NeedsDequantize = needsDequantize,
            });
        }
        int logits = index[net.Logits];
        var counts = new TensorSpec
        {
            Name = "spike_counts", Height = 1, Width = 1, Channels = net.Logits.Channels, Type = DataType.Int32, Scale = 1.0, ZeroPoint = 0,
        };
        tensors.Add(counts);
        int countsIndex = tensors.Count - 1;
        int k = net.Logits.Channels;
        var thresholds = Enumerable.Repeat(info.Threshold, k).ToArray();
        nodes.Add(new Node
        {
            Name = "readout", Kind = OpKind.SpikingReadout, Inputs = [logits], Output = countsIndex,
            TimeSteps = info.ReadoutWindow, Thresholds = thresholds, Reparameterisation = "rate-readout", Kernel = "if-closed-form",
        });
        records.Add(new LayerRecord { Name = "readout", Op = nameof(OpKind.SpikingReadout), Scale = 1.0, ZeroPoint = 0, Reparameterisation = "rate-readout", Kernel = "if-closed-form" });
        double success = 1.0 - (double)dequantize / nodes.Count;
        if (dequantize > 0)
            throw new ConversionException($"{dequantize} of {nodes.Count} nodes would need a float dequantize (conversion success rate {success:P1})");

        var graph = new ModelGraph { Tensors = tensors.ToArray(), Nodes = nodes.ToArray(), InputTensor = input, LogitsTensor = logits, OutputTensor = countsIndex };
        // c_k = min(T, ⌊T·d_k/θ⌋) ≈ (T/θ)·d_k, so β = s_logit·θ/T makes β·c_k ≈ s_logit·(q_k − zp) + const: softmax(β·c) ≈ softmax(real logits).
        double beta = net.Logits.Grid.Scale * info.Threshold / info.ReadoutWindow;
        var manifest = new ModelManifest
        {
            ModelId = info.ModelId,
            Version = info.Version,
            CreatedUtc = DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ", System.Globalization.CultureInfo.InvariantCulture),
            Classes = Classes.Codes.Take(k).ToArray(),
            Input = new InputSpec { Height = net.Input.Height, Width = net.Input.Width, Channels = 3, ColorGains = info.ColorGains, Crop = InputCrop.Centre },
            Profile = net.Scheme.Profile,
            Layers = records.ToArray(),
            ConversionSuccessRate = success,
            Metrics = info.Metrics,
            Calibration = new Model.Packaging.Calibration
            {
                ReadoutWindow = info.ReadoutWindow, Thresholds = thresholds, Beta = beta, StepWeights = [],
                TilingTau = info.TilingTau, ReferralThreshold = info.ReferralThreshold, SaliencyFlatCv = info.SaliencyFlatCv,
            },
            Golden = info.Golden,
            Provenance = info.Provenance,
        };
        var package = new ModelPackage { Manifest = manifest, Graph = graph };
        PackageValidator.Validate(package);
        return package;
    }

    private static Node WeightedNode(WeightedStep w, int[] inputs, int output, int cmin, int cmax)
    {
        // A clamped bias is a different model from the one trained in float: refuse it rather than ship a channel that
        // outputs about 0 where the network meant its bias.
        if (w.SaturatedBiases() is [var (channel, b, steps, maxWeight), ..] saturated)
            throw new ConversionException(
                $"layer {w.Name}, channel {channel}: bias {b:G4} is {steps:G3} steps of s_in·s_w, outside the int32 bias range " +
                $"[{WeightedStep.BiasMin}, {WeightedStep.BiasMax}] (largest |weight| of the channel {maxWeight:G3})" +
                (saturated.Count > 1 ? $"; {saturated.Count - 1} more channel{(saturated.Count > 2 ? "s" : "")} of the layer likewise" : "") +
                "; the integer graph would clamp it and the channel would output about 0 instead of its bias");
        var (q, bias, scales) = w.QuantizedParameters();
        int cout = w.OutChannels;
        sbyte[] weights;
        int kh = 1, kw = 1, stride = 1;
        switch (w.Layer)
        {
            case Engine.Conv2d c:
                // [K·K·Cin, Cout] → [Cout, Kh, Kw, Cin] (Conv2D) or [Cout, Cin] (pointwise).
                int rows = c.Kernel * c.Kernel * c.InChannels;
                weights = new sbyte[q.Length];
                for (int r = 0; r < rows; r++)
                    for (int o = 0; o < cout; o++) weights[o * rows + r] = q[r * cout + o];
                if (w.Kind == OpKind.Conv2D) { kh = kw = c.Kernel; }
                stride = c.Stride;
                break;
            case Engine.DepthwiseConv2d d:
                weights = q; kh = kw = d.Kernel; stride = d.Stride; // [Kh, Kw, C] already
                break;
            case Engine.Dense d:
                weights = new sbyte[q.Length];
                for (int i = 0; i < d.In; i++)
                    for (int o = 0; o < d.Out; o++) weights[o * d.In + i] = q[i * d.Out + o];
                break;
            default: throw new ConversionException($"{w.Name}: unsupported layer");
        }
        return new Node
        {
            Name = w.Name, Kind = w.Kind, Inputs = inputs, Output = output,
            KernelHeight = kh, KernelWidth = kw, StrideHeight = stride, StrideWidth = stride, Padding = Padding.Same,
            Weights = weights, WeightScales = scales, Bias = bias, ClampMin = cmin, ClampMax = cmax,
            Reparameterisation = w.Reparameterisation, Kernel = w.KernelName,
        };
    }

    /// <summary>table[i] = clamp(zp_out + round(σ(s_in·(i − 128 − zp_in)) / s_out)), half away from zero.</summary>
    public static sbyte[] SigmoidTable(ActivationGrid inGrid, ActivationGrid outGrid, int cmin, int cmax)
    {
        var table = new sbyte[256];
        for (int i = 0; i < 256; i++)
        {
            double x = inGrid.Scale * (i - 128 - inGrid.ZeroPoint);
            double y = 1.0 / (1.0 + Math.Exp(-x));
            table[i] = (sbyte)QuantMath.Quantize(y, outGrid.Scale, outGrid.ZeroPoint, cmin, cmax);
        }
        return table;
    }
}
