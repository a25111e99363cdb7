using System.Diagnostics;
using QanaEdge.Model.Graph;
using QanaEdge.Model.Packaging;
using QanaEdge.Runtime;

namespace QanaEdge.Imaging;

/// <summary>What <see cref="LesionClassifier"/> may do besides the plain centred view.</summary>
public sealed record ClassifierOptions
{
    public static ClassifierOptions Default { get; } = new();

    /// <summary>Choose the crop by Grad-CAM (needs an <see cref="IntegerEngine"/>); off means the centred square crop.
    /// Null (the default) follows the package's <see cref="InputSpec.Crop"/>: the framing the network was trained on.</summary>
    public bool? Saliency { get; init; }
    /// <summary>Give the Grad-CAM map of the centred view in the result (for an overlay: <c>qana classify --saliency</c>),
    /// whichever the crop. It is read from the run already made, so it costs no extra run and changes no result; only
    /// the map the result keeps is allocated. Off, the saliency crop still reads the map, from the classifier's own
    /// buffer, and the result carries none.</summary>
    public bool SaliencyMap { get; init; }
    /// <summary>Average with four overlapping tiles when the top probability is under the manifest's τ.</summary>
    public bool Tiling { get; init; } = true;
    /// <summary>
    /// Instead of tiling, average the view with its seven rotations and mirrors (dermoscopy has no orientation, and
    /// training saw all eight) when the top probability is under <see cref="SymmetryTau"/>. Off by default: it costs
    /// seven more runs on the images it fires for (docs/experiments.md has what it gained on our split).
    /// </summary>
    public bool Symmetries { get; init; }
    /// <summary>Top probability under which <see cref="Symmetries"/> fires (0.5: about one image in five on our
    /// validation split, and as accurate there as averaging every image).</summary>
    public double SymmetryTau { get; init; } = 0.5;
    public DecodeLimits Limits { get; init; } = DecodeLimits.Default;
}

/// <summary>The classification of one image.</summary>
public sealed class LesionResult
{
    /// <summary>Class code of the highest probability.</summary>
    public required string Label { get; init; }
    /// <summary>Probabilities in the package's class order (akiec, bcc, bkl, df, mel, nv, vasc).</summary>
    public required float[] Probabilities { get; init; }
    public required IReadOnlyList<string> Classes { get; init; }
    /// <summary>Probability of <see cref="Label"/>.</summary>
    public required float Confidence { get; init; }
    /// <summary>p(mel) + p(bcc) + p(akiec).</summary>
    public required double MalignancyScore { get; init; }
    /// <summary>Malignancy score at or above the manifest's referral threshold.</summary>
    public required bool Refer { get; init; }
    /// <summary>The tiling fallback ran (top probability of the single view under τ).</summary>
    public required bool Tiled { get; init; }
    /// <summary>The symmetry fallback ran (<see cref="ClassifierOptions.Symmetries"/>).</summary>
    public bool Symmetrized { get; init; }
    /// <summary>The square of the (oriented) image the network classified.</summary>
    public required CropBox Crop { get; init; }
    public required CropReason CropReason { get; init; }
    public string CropReasonCode => CropReasons.Code(CropReason);
    /// <summary>Wall time from file bytes to result, milliseconds.</summary>
    public required double LatencyMs { get; init; }
    /// <summary>Events (non-zero activations) summed over every network run this result needed.</summary>
    public required long Events { get; init; }
    /// <summary>Network runs this result needed (1 centred; +1 saliency crop; +4 tiles or +7 symmetries).</summary>
    public required int Runs { get; init; }
    public required int ImageWidth { get; init; }
    public required int ImageHeight { get; init; }
    /// <summary>The Grad-CAM map of the centred view (the one a saliency crop was chosen from) when
    /// <see cref="ClassifierOptions.SaliencyMap"/> asks for it; null otherwise, or when none can be computed (the
    /// engine exposes no activations, or the head has no spatial input).</summary>
    public SaliencyMap? Saliency { get; init; }
    /// <summary>
    /// The int8 input of the model's head (dense readout) for the classified view, before any tiling: what the
    /// device's readout learner trains on once a clinician labels the case. Null when the engine does not expose it
    /// (an Akida card computes it on the card) or the model has no recognisable head.
    /// </summary>
    public sbyte[]? HeadInput { get; init; }
}

/// <summary>
/// The one call the CLI and the daemon make: file bytes → decode → crop (Grad-CAM saliency or centred) →
/// area resample → gray-world gains → quantize → engine → probabilities → tiling or symmetry fallback → referral.
/// Not thread-safe (the engine is not): one classifier per engine per thread. It does not own the engine.
/// </summary>
public sealed class LesionClassifier
{
    private readonly ModelPackage _package;
    private readonly InferencePipeline _pipeline;
    private readonly ClassifierOptions _options;
    private readonly bool _saliency;
    private readonly string[] _classes;
    private readonly int[] _malignant;
    private readonly Node? _readout;
    private readonly TensorSpec _logitsSpec;
    private readonly int _headInput;

    public LesionClassifier(ModelPackage package, IInferenceEngine engine, ClassifierOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(package);
        ArgumentNullException.ThrowIfNull(engine);
        _package = package;
        _pipeline = new InferencePipeline(package, engine);
        _options = options ?? ClassifierOptions.Default;
        _saliency = _options.Saliency ?? package.Manifest.Input.Crop == InputCrop.Saliency;
        _classes = package.Manifest.Classes;
        _logitsSpec = package.Graph.Tensors[package.Graph.LogitsTensor];
        if (_classes.Length != _logitsSpec.Length)
            throw new ArgumentException($"{_classes.Length} class names for {_logitsSpec.Length} logits", nameof(package));
        _malignant = Model.Classes.Malignant.Select(code => Array.FindIndex(_classes, c => string.Equals(c, code, StringComparison.OrdinalIgnoreCase)))
            .Where(i => i >= 0).ToArray();
        _readout = package.Graph.Nodes.LastOrDefault(n => n.Kind == OpKind.SpikingReadout && n.Inputs[0] == package.Graph.LogitsTensor);
        // Only an engine that keeps the head input in its own buffer is asked for it: reading an overwritten tensor
        // would cost a second run per image.
        _headInput = HeadInfo.Find(package.Graph)?.InputTensor is int t && engine is IntegerEngine ie && ie.Keeps(t) ? t : -1;
    }

    /// <summary>
    /// An optimized integer engine for <paramref name="package"/> that keeps the Grad-CAM feature map and the head's
    /// input in buffers of their own, so reading them after a run costs no second run.
    /// </summary>
    public static IntegerEngine CreateEngine(ModelPackage package, KernelMode mode = KernelMode.Optimized)
    {
        ArgumentNullException.ThrowIfNull(package);
        HeadInfo? head = HeadInfo.Find(package.Graph);
        return IntegerEngine.Create(package, mode, new EngineOptions { RetainTensors = head is null ? [] : [head.FeatureTensor, head.InputTensor] });
    }

    public ModelPackage Package => _package;
    public IInferenceEngine Engine => _pipeline.Engine;

    /// <exception cref="ImageRejectedException">The file is not an acceptable image.</exception>
    public LesionResult Classify(ReadOnlySpan<byte> fileBytes)
    {
        long start = Stopwatch.GetTimestamp();
        RgbImage image = ImageDecoder.Decode(fileBytes, _options.Limits);
        return Classify(image, start);
    }

    /// <summary>Classifies an image that is already decoded (latency then excludes decoding).</summary>
    public LesionResult Classify(RgbImage image) => Classify(image, Stopwatch.GetTimestamp());

    private LesionResult Classify(RgbImage image, long start)
    {
        ArgumentNullException.ThrowIfNull(image);
        _pipeline.ResetCounters();
        IInferenceEngine engine = _pipeline.Engine;
        int k = _classes.Length;

        // 1. The view: the saliency crop chosen on the centred view, or the centred view itself.
        CropDecision decision;
        if (_saliency)
        {
            decision = _pipeline.ChooseCrop(image, _options.SaliencyMap);
            // The centred run is already in the engine; only a different crop needs its own run.
            if (decision.Reason == CropReason.Saliency) _pipeline.Run(image, decision.Crop);
        }
        else
        {
            var centred = CropBox.CenteredSquare(image.Width, image.Height);
            _pipeline.Run(image, centred);
            decision = new CropDecision(centred, CropReason.Centred, _options.SaliencyMap ? _pipeline.MapOfLastRun(centred) : null);
        }

        sbyte[]? headInput = _headInput >= 0 ? ((IntegerEngine)engine).Activation(_headInput).ToArray() : null;
        var probabilities = new float[k];
        engine.GetProbabilities(probabilities);
        Span<sbyte> logits = stackalloc sbyte[k];
        engine.Logits.CopyTo(logits);
        bool tiled = false, symmetrized = false;

        // 2. Fallback for an unsure view: averaged (in dequantized logits) with its seven rotations and mirrors when
        // the options choose that, otherwise with four overlapping tiles under the manifest's τ.
        float top = probabilities.Max();
        if (_options.Symmetries ? top < _options.SymmetryTau : _options.Tiling && top < _package.Manifest.Calibration.TilingTau)
        {
            // On the stack: the fallback allocates nothing that a single view does not.
            Span<CropBox> tiles = stackalloc CropBox[Tiling.Count];
            Span<double> sum = stackalloc double[k];
            AddRealLogits(engine.Logits, sum);
            int views = 1;
            if (_options.Symmetries)
                for (int symmetry = 1; symmetry < 8; symmetry++, views++)
                {
                    _pipeline.RunSymmetry(symmetry);
                    AddRealLogits(engine.Logits, sum);
                }
            else
            {
                Tiling.Tiles(decision.Crop, tiles);
                foreach (CropBox tile in tiles)
                {
                    _pipeline.Run(image, tile);
                    AddRealLogits(engine.Logits, sum);
                    views++;
                }
            }
            for (int i = 0; i < k; i++) sum[i] /= views;
            ProbabilitiesFromRealLogits(sum, logits, probabilities);
            symmetrized = _options.Symmetries;
            tiled = !_options.Symmetries;
        }

        int best = InferencePipeline.ArgMax(probabilities, logits);
        double malignancy = 0;
        foreach (int i in _malignant) malignancy += probabilities[i];
        return new LesionResult
        {
            Label = _classes[best],
            Probabilities = probabilities,
            Classes = _classes,
            Confidence = probabilities[best],
            MalignancyScore = malignancy,
            Refer = malignancy >= _package.Manifest.Calibration.ReferralThreshold,
            Tiled = tiled,
            Symmetrized = symmetrized,
            Crop = decision.Crop,
            CropReason = decision.Reason,
            LatencyMs = Stopwatch.GetElapsedTime(start).TotalMilliseconds,
            Events = _pipeline.Events,
            Runs = _pipeline.Runs,
            ImageWidth = image.Width,
            ImageHeight = image.Height,
            Saliency = decision.Map,
            HeadInput = headInput,
        };
    }

    private void AddRealLogits(ReadOnlySpan<sbyte> logits, Span<double> sum)
    {
        for (int i = 0; i < logits.Length; i++) sum[i] += _logitsSpec.Scale * (logits[i] - _logitsSpec.ZeroPoint);
    }

    /// <summary>
    /// Probabilities of averaged logits by the same rule as a single run: through the package's spiking readout
    /// when it has one (the average requantized to the logits' int8 grid, one rounding half away from zero, into
    /// <paramref name="q"/>),
    /// otherwise the softmax of the real logits.
    /// </summary>
    private void ProbabilitiesFromRealLogits(ReadOnlySpan<double> real, Span<sbyte> q, Span<float> probabilities)
    {
        for (int i = 0; i < real.Length; i++)
            q[i] = (sbyte)Math.Clamp(_logitsSpec.ZeroPoint + Math.Round(real[i] / _logitsSpec.Scale, MidpointRounding.AwayFromZero), -128, 127);
        if (_readout?.Thresholds is not { } thresholds)
        {
            SpikingReadout.Softmax(real, probabilities);
            return;
        }
        Calibration cal = _package.Manifest.Calibration;
        SpikingReadout.Probabilities(q, thresholds, _readout.TimeSteps, cal.Beta, cal.StepWeights, probabilities);
    }
}
