using QanaEdge.Model.Packaging;
using QanaEdge.Runtime;

namespace QanaEdge.Imaging;

/// <summary>
/// The preprocessing entry points training and the device share: decode → crop → area resample to the
/// model input → (at inference) gray-world gains → quantize. Training caches the uint8 crops these produce,
/// fits its gains on them and applies <see cref="ApplyColorGains"/> itself; the device applies the package's gains.
/// </summary>
public static class Preprocessor
{
    /// <summary>Decodes a file and writes its centred square crop, area-resampled to <paramref name="size"/>², into <paramref name="dstHwc"/>.</summary>
    /// <exception cref="ImageRejectedException">The file is not an acceptable image.</exception>
    public static CropBox PrepareCentered(ReadOnlySpan<byte> fileBytes, int size, Span<byte> dstHwc, DecodeLimits? limits = null) =>
        PrepareCentered(ImageDecoder.Decode(fileBytes, limits), size, dstHwc);

    /// <summary>The centred square crop of a decoded image, area-resampled to <paramref name="size"/>².</summary>
    public static CropBox PrepareCentered(RgbImage image, int size, Span<byte> dstHwc)
    {
        CropBox crop = CropBox.CenteredSquare(image.Width, image.Height);
        Resampler.AreaResize(image, crop, size, dstHwc);
        return crop;
    }

    /// <summary>
    /// The saliency crop of DESIGN.md, chosen by the backbone of <paramref name="engine"/>'s package (Grad-CAM on
    /// its centred view), area-resampled to <paramref name="size"/>² into <paramref name="dstHwc"/> without gains.
    /// </summary>
    public static CropDecision PrepareSaliency(RgbImage image, IntegerEngine engine, int size, Span<byte> dstHwc)
    {
        ArgumentNullException.ThrowIfNull(engine);
        var pipeline = new InferencePipeline(engine.Package, engine);
        CropDecision decision = pipeline.ChooseCrop(image, keepMap: true);
        Resampler.AreaResize(image, decision.Crop, size, dstHwc);
        return decision;
    }

    /// <summary>Multiplies each pixel's R, G, B by <paramref name="gains"/> (gray-world normalisation),
    /// rounding half away from zero and clamping to 0…255. Gains of exactly 1 leave a channel untouched.</summary>
    public static void ApplyColorGains(Span<byte> hwc, ReadOnlySpan<float> gains)
    {
        if (gains.Length != 3) throw new ArgumentException($"3 gains (R, G, B) expected, got {gains.Length}", nameof(gains));
        if (hwc.Length % 3 != 0) throw new ArgumentException("not whole RGB pixels", nameof(hwc));
        for (int c = 0; c < 3; c++)
            if (!(gains[c] > 0) || float.IsInfinity(gains[c]))
                throw new ArgumentOutOfRangeException(nameof(gains), $"gain {gains[c]} must be positive and finite");
        if (gains[0] == 1f && gains[1] == 1f && gains[2] == 1f) return;
        Span<byte> lut = stackalloc byte[3 * 256];
        for (int c = 0; c < 3; c++)
            for (int v = 0; v < 256; v++)
                lut[c * 256 + v] = (byte)Math.Clamp(Math.Round(v * (double)gains[c], MidpointRounding.AwayFromZero), 0, 255);
        for (int i = 0; i < hwc.Length; i += 3)
        {
            hwc[i] = lut[hwc[i]];
            hwc[i + 1] = lut[256 + hwc[i + 1]];
            hwc[i + 2] = lut[512 + hwc[i + 2]];
        }
    }

    internal static void ValidateInput(ModelPackage package)
    {
        InputSpec input = package.Manifest.Input;
        if (input.Height != input.Width || input.Height <= 0)
            throw new ArgumentException($"the model input must be square, not {input.Height}x{input.Width}", nameof(package));
        if (input.Channels != 3)
            throw new ArgumentException($"the model input must be RGB, not {input.Channels} channels", nameof(package));
        var spec = package.Graph.Tensors[package.Graph.InputTensor];
        if (spec.Height != input.Height || spec.Width != input.Width || spec.Channels != 3)
            throw new ArgumentException($"manifest input {input.Height}x{input.Width}x3 differs from the graph's {spec}", nameof(package));
        if (input.ColorGains.Length != 3)
            throw new ArgumentException($"the manifest needs 3 colour gains, has {input.ColorGains.Length}", nameof(package));
    }
}
