using QanaEdge.Model.Packaging;

namespace QanaEdge.Daemon.Classification;

/// <summary>What the daemon needs from one classification (mirrors Imaging's LesionResult). <see cref="Probabilities"/> are in
/// the order of <see cref="Classes"/>, the package's class names (null: <see cref="QanaEdge.Model.Classes.Codes"/>).</summary>
public sealed record Classification(
    string Label,
    float[] Probabilities,
    float Confidence,
    bool Refer,
    bool Tiled,
    double LatencyMs,
    sbyte[]? HeadInput = null,
    bool Symmetrized = false,
    IReadOnlyList<string>? Classes = null);

/// <summary>The image was refused before or during classification; <see cref="Reason"/> is a short code.</summary>
public sealed class CaptureRejectedException(string reason, string message, Exception? inner = null) : Exception(message, inner)
{
    public string Reason { get; } = reason;
}

/// <summary>One classifier per worker thread: implementations are not thread-safe.</summary>
public interface IImageClassifier : IDisposable
{
    /// <summary>The model this classifier runs: what its results carry, whatever the daemon runs by then.</summary>
    string ModelId { get; }
    string ModelVersion { get; }
    /// <summary>The model's backbone digest (<see cref="IClassifierProvider.Backbone"/>), recorded with each head input.</summary>
    string? Backbone { get; }

    /// <summary>Classifies encoded image bytes; throws <see cref="CaptureRejectedException"/> for a bad image.</summary>
    Classification Classify(ReadOnlySpan<byte> fileBytes);
}

/// <summary>A model on the engine chosen for it; makes one classifier per worker.</summary>
public interface IClassifierProvider : IDisposable
{
    ModelPackage Package { get; }
    /// <summary>Where the package was loaded from (firmware, Qana:Model, or an applied update under the state folder).</summary>
    string PackagePath { get; }
    string ModelId { get; }
    string ModelVersion { get; }
    /// <summary>Engine in use, e.g. "managed IntegerEngine (Optimized)" or "akida".</summary>
    string EngineName { get; }
    /// <summary>Why this engine was chosen (said in the log and the status message).</summary>
    string EngineReason { get; }
    /// <summary>The model's <see cref="ReadoutUpdates.BackboneDigest"/>, computed once: which readouts its head inputs can
    /// teach; null when it has no replaceable readout.</summary>
    string? Backbone { get; }
    /// <summary>True when the provider holds a device (an Akida card) that only one provider can hold at a time.</summary>
    bool HoldsDevice { get; }
    IImageClassifier CreateClassifier();
    /// <summary>
    /// Runs the package's golden vectors, or <paramref name="vectors"/> when given, on this provider's engine: null when
    /// every one matches, else why not.
    /// </summary>
    string? SelfTest(GoldenVector[]? vectors = null);
}
