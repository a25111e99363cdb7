namespace QanaEdge.Model.Packaging;

/// <summary>
/// Everything about a model that is not its weights: identity, input contract, conversion table,
/// metrics, calibration and golden self-test vectors. Serialized as JSON inside the package.
/// </summary>
public sealed class ModelManifest
{
    public required string ModelId { get; init; }
    public required string Version { get; init; }
    /// <summary>A complete model, or a readout update learned on the device for one base model.</summary>
    public PackageKind Kind { get; init; } = PackageKind.Model;
    /// <summary>For a readout update: the <see cref="ModelId"/> of the model it applies to (else null).</summary>
    public string? BaseModelId { get; init; }
    /// <summary>For a readout update: the <see cref="Version"/> of the model it applies to (else null).</summary>
    public string? BaseModelVersion { get; init; }
    public string CreatedUtc { get; init; } = "";
    public required string[] Classes { get; init; }
    public required InputSpec Input { get; init; }
    public required QuantizationProfile Profile { get; init; }
    /// <summary>Per-layer conversion table, one row per graph node.</summary>
    public LayerRecord[] Layers { get; init; } = [];
    /// <summary>1 − |dequantize nodes| / |nodes|; a shipped package has 1.0.</summary>
    public double ConversionSuccessRate { get; init; } = 1.0;
    /// <summary>Evaluation figures of the converted model (e.g. "test_top1", "test_macro_f1").</summary>
    public Dictionary<string, double> Metrics { get; init; } = [];
    public Calibration Calibration { get; init; } = new();
    public GoldenVector[] Golden { get; init; } = [];
    /// <summary>Free-form provenance: data hash, seed, epochs, ablation switches.</summary>
    public Dictionary<string, string> Provenance { get; init; } = [];
}

/// <summary>The input the network expects: an RGB crop of Height×Width, per-channel scaled to [0,1].
/// Its quantization is that of the graph's input tensor (normally scale 1/255, zero point −128, so a
/// uint8 pixel p becomes the int8 value p − 128 with no arithmetic beyond a subtraction).</summary>
public sealed class InputSpec
{
    public required int Height { get; init; }
    public required int Width { get; init; }
    public int Channels { get; init; } = 3;
    /// <summary>Gray-world gains (R, G, B) fitted on the training split; 1,1,1 when unused.</summary>
    public float[] ColorGains { get; init; } = [1f, 1f, 1f];
    /// <summary>How the view was cut when the network was trained, and so how the device must cut it:
    /// <see cref="InputCrop.Centre"/> (centred square) or <see cref="InputCrop.Saliency"/> (Grad-CAM crop with
    /// centred fallback). A network sees in the field only the framing it learned from.</summary>
    public string Crop { get; init; } = InputCrop.Centre;
}

/// <summary>Values of <see cref="InputSpec.Crop"/>.</summary>
public static class InputCrop
{
    public const string Centre = "centre";
    public const string Saliency = "saliency";

    public static bool IsKnown(string? crop) => crop is Centre or Saliency;
}

/// <summary>A row of the conversion table.</summary>
public sealed class LayerRecord
{
    public required string Name { get; init; }
    public required string Op { get; init; }
    public required double Scale { get; init; }
    public required int ZeroPoint { get; init; }
    public string Reparameterisation { get; init; } = "none";
    public string Kernel { get; init; } = "";
    /// <summary>True when the node could not be expressed in integers (it would need a dequantize).</summary>
    public bool NeedsDequantize { get; init; }
}

/// <summary>Post-training calibration, fitted on the validation split.</summary>
public sealed class Calibration
{
    /// <summary>Readout window T.</summary>
    public int ReadoutWindow { get; init; } = 16;
    /// <summary>Per-class IF thresholds θ_k (input quanta).</summary>
    public int[] Thresholds { get; init; } = [];
    /// <summary>p_k = softmax(β·Σ_t w_t·s_k,t).</summary>
    public double Beta { get; init; } = 1.0;
    /// <summary>w_t, length T; empty means all ones.</summary>
    public double[] StepWeights { get; init; } = [];
    /// <summary>Tiling fallback fires when the top probability is under τ.</summary>
    public double TilingTau { get; init; } = 0.0;
    /// <summary>Refer when p(mel)+p(bcc)+p(akiec) ≥ this (calibrated for ≥ 90% sensitivity).</summary>
    public double ReferralThreshold { get; init; } = 0.5;
    /// <summary>Saliency maps with a coefficient of variation under this are "flat": centred crop.</summary>
    public double SaliencyFlatCv { get; init; } = 0.15;
}

/// <summary>A self-test: a quantized input and the logits the reference engine must produce for it.</summary>
public sealed class GoldenVector
{
    /// <summary>Quantized input tensor, HWC int8, as stored bytes.</summary>
    public required sbyte[] Input { get; init; }
    public required sbyte[] ExpectedLogits { get; init; }
}
