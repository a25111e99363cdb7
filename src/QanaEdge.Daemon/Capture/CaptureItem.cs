namespace QanaEdge.Daemon.Capture;

/// <summary>
/// One capture on its way through the pipeline. <see cref="Path"/> is the inbox file (null for a camera frame, which
/// only exists in memory); <see cref="LandedTimestamp"/> is the Stopwatch time the capture was noticed, for latency.
/// </summary>
public sealed record CaptureItem(string? Path, byte[] Bytes, string Source, DateTime CapturedAtUtc, long LandedTimestamp)
{
    public string DisplayName => Path is null ? Source : System.IO.Path.GetFileName(Path);
}
