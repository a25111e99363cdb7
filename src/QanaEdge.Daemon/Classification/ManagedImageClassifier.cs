using System.Diagnostics;
using QanaEdge.Imaging;
using QanaEdge.Model;
using QanaEdge.Model.Packaging;
using QanaEdge.Runtime;

namespace QanaEdge.Daemon.Classification;

/// <summary>
/// Classifies with Imaging's hardened decoder and the managed integer engine: decode and integrity checks, a centred
/// square crop area-resampled to the model input, input quantization, the integer network with its spiking readout,
/// referral from the malignant classes. This build has no saliency crop or tiling in the daemon path (those belong to
/// Imaging's LesionClassifier, which replaces this class once it is in the build), so <c>tiled</c> is always false.
/// One instance per worker thread.
/// </summary>
public sealed class ManagedImageClassifier : IImageClassifier
{
    private static readonly int[] MalignantIndexes = Classes.Malignant.Select(Classes.IndexOf).ToArray();
    private readonly IInferenceEngine _engine;
    private readonly int _size;
    private readonly byte[] _rgb;
    private readonly sbyte[] _input;
    private readonly float[] _probabilities;
    private readonly double _referral;
    private readonly string[] _classes;

    public ManagedImageClassifier(ModelPackage package, IInferenceEngine engine)
    {
        _engine = engine;
        InputSpec spec = package.Manifest.Input;
        if (spec.Height != spec.Width || spec.Channels != 3)
            throw new ModelUnavailableException($"model {package.Manifest.ModelId}: input {spec.Height}x{spec.Width}x{spec.Channels} is not a square RGB input");
        _size = spec.Width;
        _rgb = new byte[_size * _size * 3];
        _input = new sbyte[_rgb.Length];
        _classes = package.Manifest.Classes;
        _probabilities = new float[_classes.Length];
        _referral = package.Manifest.Calibration.ReferralThreshold;
    }

    public Classification Classify(ReadOnlySpan<byte> fileBytes)
    {
        long t0 = Stopwatch.GetTimestamp();
        RgbImage image;
        try { image = ImageDecoder.Decode(fileBytes); }
        catch (ImageRejectedException e) { throw new CaptureRejectedException(e.Reason.ToString(), e.Message, e); }
        Resampler.AreaResize(image, CropBox.CenteredSquare(image.Width, image.Height), _size, _rgb);
        InputQuantizer.Quantize(_rgb, _input);
        _engine.Run(_input);
        _engine.GetProbabilities(_probabilities);
        int top = 0;
        for (int k = 1; k < _probabilities.Length; k++) if (_probabilities[k] > _probabilities[top]) top = k;
        double malignant = 0;
        foreach (int k in MalignantIndexes) if (k >= 0 && k < _probabilities.Length) malignant += _probabilities[k];
        return new Classification(_classes[top], (float[])_probabilities.Clone(), _probabilities[top], malignant >= _referral, false,
            Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
    }

    public void Dispose() => _engine.Dispose();
}
