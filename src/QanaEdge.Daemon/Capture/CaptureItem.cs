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

    private string? _sha256;

    /// <summary>
    /// SHA-256 of <see cref="Bytes"/> (lowercase hex), computed at the first ask and kept: the watcher asks it of a file
    /// named as a camera frame (<see cref="CameraTrigger.IsOwnFrame"/>), the pipeline of every capture, and each hashed
    /// the frame's bytes anew.
    /// </summary>
    public string Sha256 => _sha256 ??= Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(Bytes));
}
