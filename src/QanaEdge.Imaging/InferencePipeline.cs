using QanaEdge.Model.Graph;
using QanaEdge.Model.Packaging;
using QanaEdge.Runtime;

namespace QanaEdge.Imaging;

/// <summary>
/// One view of an image through the network: area resample → colour gains → quantize → run. Holds the
/// buffers, so a view costs no allocation beyond the engine's own, and so does choosing the saliency crop (the
/// Grad-CAM map, its channel weights and the flood fill's marks and stack are sized here, once);
/// not thread-safe (neither is the engine).
/// </summary>
internal sealed class InferencePipeline
{
    private readonly ModelPackage _package;
    private readonly IInferenceEngine _engine;
    private readonly HeadInfo? _head;
    private readonly byte[] _pixels;
    private readonly sbyte[] _input;
    private readonly sbyte[] _turned;     // a rotation or mirror of _input (RunSymmetry)
    private readonly float[] _gains;
    private readonly TensorSpec _inputSpec;
    // Grad-CAM of the last run (empty without a head): cells, channel weights, and the crop's flood fill.
    private readonly float[] _map = [];
    private readonly double[] _alpha = [];
    private readonly bool[] _inRegion = [];
    private readonly int[] _stack = [];

    public InferencePipeline(ModelPackage package, IInferenceEngine engine)
    {
        ArgumentNullException.ThrowIfNull(package);
        ArgumentNullException.ThrowIfNull(engine);
        Preprocessor.ValidateInput(package);
        _package = package;
        _engine = engine;
        _inputSpec = package.Graph.Tensors[package.Graph.InputTensor];
        Size = package.Manifest.Input.Height;
        _pixels = new byte[Size * Size * 3];
        _input = new sbyte[_pixels.Length];
        _turned = new sbyte[_pixels.Length];
        _gains = package.Manifest.Input.ColorGains;
        _head = engine is IntegerEngine ? HeadInfo.Find(package.Graph) : null;
        if (_head is not null)
        {
            int cells = _head.Feature.Height * _head.Feature.Width;
            _map = new float[cells];
            _alpha = new double[_head.Feature.Channels];
            _inRegion = new bool[cells];
            _stack = new int[cells];
        }
    }

    public int Size { get; }
    public IInferenceEngine Engine => _engine;
    public long Events { get; private set; }
    public int Runs { get; private set; }

    public void ResetCounters()
    {
        Events = 0;
        Runs = 0;
    }

    /// <summary>Runs the network on <paramref name="view"/> of the image.</summary>
    public void Run(RgbImage image, CropBox view)
    {
        Resampler.AreaResize(image, view, Size, _pixels);
        Preprocessor.ApplyColorGains(_pixels, _gains);
        InputQuantizer.Quantize(_pixels, _input, _inputSpec.Scale, _inputSpec.ZeroPoint);
        _engine.Run(_input);
        Events += _engine.Events;
        Runs++;
    }

    /// <summary>
    /// Runs the network on one of the eight symmetries of the square the last <see cref="Run"/> fed it, applied to
    /// its quantized input: bit 2 of <paramref name="symmetry"/> transposes, then bit 0 mirrors left-right and bit 1
    /// top-bottom (0 is the view itself). Moving int8 values is exact, so this equals running the rotated or mirrored
    /// crop without resampling it again. The last view's input is left as it was.
    /// </summary>
    public void RunSymmetry(int symmetry)
    {
        if ((uint)symmetry >= 8) throw new ArgumentOutOfRangeException(nameof(symmetry), symmetry, "a square has 8 symmetries, 0-7");
        bool transpose = (symmetry & 4) != 0, mirrorX = (symmetry & 1) != 0, mirrorY = (symmetry & 2) != 0;
        int s = Size;
        for (int y = 0; y < s; y++)
        {
            int yy = mirrorY ? s - 1 - y : y;
            for (int x = 0; x < s; x++)
            {
                int xx = mirrorX ? s - 1 - x : x;
                int from = (transpose ? xx * s + yy : yy * s + xx) * 3, to = (y * s + x) * 3;
                _turned[to] = _input[from];
                _turned[to + 1] = _input[from + 1];
                _turned[to + 2] = _input[from + 2];
            }
        }
        _engine.Run(_turned);
        Events += _engine.Events;
        Runs++;
    }

    /// <summary>
    /// Runs the centred view and picks the crop from its Grad-CAM map (the engine is left holding the centred run).
    /// The map is computed into this pipeline's buffer; the decision carries a copy only when
    /// <paramref name="keepMap"/> asks for one (a map the caller keeps is the one allocation this path makes).
    /// </summary>
    public CropDecision ChooseCrop(RgbImage image, bool keepMap)
    {
        CropBox centred = CropBox.CenteredSquare(image.Width, image.Height);
        Run(image, centred);
        if (!ComputeMap()) return new CropDecision(centred, CropReason.NoSaliencyMap, null);
        double flatCv = _package.Manifest.Calibration.SaliencyFlatCv;
        var (crop, reason) = SaliencyCrop.Choose(_map, _head!.Feature.Width, _head.Feature.Height, centred,
            image.Width, image.Height, flatCv, _inRegion, _stack);
        return new CropDecision(crop, reason, keepMap ? CopyOfMap(centred) : null);
    }

    /// <summary>Grad-CAM of the last run for its predicted class, laid over <paramref name="region"/> (a map of its
    /// own, for the caller to keep); null when unavailable.</summary>
    public SaliencyMap? MapOfLastRun(CropBox region) => ComputeMap() ? CopyOfMap(region) : null;

    /// <summary>Grad-CAM of the last run for its predicted class into <see cref="_map"/>; false when unavailable.</summary>
    private bool ComputeMap()
    {
        if (_head is null || _engine is not IntegerEngine integer) return false;
        ReadOnlySpan<sbyte> logits = _engine.Logits;
        Span<float> p = stackalloc float[logits.Length];
        _engine.GetProbabilities(p);
        int k = ArgMax(p, logits);
        int length = _head.RowLength;
        GradCam.Compute(integer.Activation(_head.FeatureTensor), _head.Feature,
            _head.Head.Weights.AsSpan(k * length, length), _map, _alpha);
        return true;
    }

    private SaliencyMap CopyOfMap(CropBox region) => new(_head!.Feature.Width, _head.Feature.Height, (float[])_map.Clone(), region);

    /// <summary>The device's decision: <see cref="SpikingReadout.Decide"/>.</summary>
    public static int ArgMax(ReadOnlySpan<float> p, ReadOnlySpan<sbyte> logits) => SpikingReadout.Decide(p, logits);
}
