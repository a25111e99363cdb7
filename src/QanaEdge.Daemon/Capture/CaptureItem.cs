namespace QanaEdge.Daemon.Capture;

/// <summary>
/// One capture on its way through the pipeline: the inbox file <see cref="Path"/> (camera frames are written there
/// too) and the bytes read from it; <see cref="Source"/> is "inbox" or "camera"; <see cref="LandedTimestamp"/> is the
/// Stopwatch time the capture was noticed, for latency. <see cref="RenamedIn"/>: it was renamed into its name from a
/// temporary one, so its writer had finished; otherwise it counted once it held still, and a writer that paused may
/// not have finished.
/// </summary>
public sealed record CaptureItem(string Path, byte[] Bytes, string Source, DateTime CapturedAtUtc, long LandedTimestamp, bool RenamedIn = false)
{
    public string DisplayName => System.IO.Path.GetFileName(Path);
}
