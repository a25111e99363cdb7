namespace QanaEdge.Daemon.Classification;

/// <summary>What the daemon needs from one classification (mirrors Imaging's LesionResult).</summary>
public sealed record Classification(
    string Label,
    float[] Probabilities,
    float Confidence,
    bool Refer,
    bool Tiled,
    double LatencyMs);

/// <summary>The image was refused before or during classification; <see cref="Reason"/> is a short code.</summary>
public sealed class CaptureRejectedException(string reason, string message, Exception? inner = null) : Exception(message, inner)
{
    public string Reason { get; } = reason;
}

/// <summary>One classifier per worker thread: implementations are not thread-safe.</summary>
public interface IImageClassifier : IDisposable
{
    /// <summary>Classifies encoded image bytes; throws <see cref="CaptureRejectedException"/> for a bad image.</summary>
    Classification Classify(ReadOnlySpan<byte> fileBytes);
}

/// <summary>The model and engine chosen at start; makes one classifier per worker.</summary>
public interface IClassifierProvider : IDisposable
{
    string ModelId { get; }
    string ModelVersion { get; }
    /// <summary>Engine in use, e.g. "managed IntegerEngine (Optimized)" or "akida".</summary>
    string EngineName { get; }
    /// <summary>Why this engine was chosen (said in the log and the status message).</summary>
    string EngineReason { get; }
    IImageClassifier CreateClassifier();
}
