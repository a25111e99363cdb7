using QanaEdge.Imaging;
using QanaEdge.Model.Packaging;
using QanaEdge.Runtime;

namespace QanaEdge.Daemon.Classification;

/// <summary>
/// Imaging's LesionClassifier (decode and integrity checks, the crop the package records (centred for every package
/// training writes), tiling or symmetry fallback, referral) on an engine of its own. One instance per worker thread: neither the engine nor the classifier is thread-safe.
/// </summary>
public sealed class LesionImageClassifier(ModelPackage package, IInferenceEngine engine, string? backbone = null,
    ClassifierOptions? options = null) : IImageClassifier
{
    private readonly LesionClassifier _classifier = new(package, engine, options);

    public string ModelId => package.Manifest.ModelId;
    public string ModelVersion => package.Manifest.Version;
    public string? Backbone => backbone;

    public Classification Classify(ReadOnlySpan<byte> fileBytes)
    {
        LesionResult r;
        try { r = _classifier.Classify(fileBytes); }
        catch (ImageRejectedException e) { throw new CaptureRejectedException(e.Reason.ToString(), e.Message, e); }
        return new Classification(r.Label, r.Probabilities, r.Confidence, r.Refer, r.Tiled, r.LatencyMs, r.HeadInput, r.Symmetrized, r.Classes);
    }

    public void Dispose() => engine.Dispose();
}
