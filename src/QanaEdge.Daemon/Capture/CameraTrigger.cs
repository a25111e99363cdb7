using System.Security.Cryptography;
using Microsoft.Extensions.Logging;
using QanaEdge.Daemon.Hosting;
using QanaEdge.Daemon.Storage;
using QanaEdge.Devices.Camera;
using QanaEdge.Devices.Gpio;
using QanaEdge.Model;

namespace QanaEdge.Daemon.Capture;

/// <summary>
/// Takes one camera frame per trigger (GPIO button press or MQTT capture command) and writes it into the inbox, where
/// it is a capture like any other: the watcher takes it, and once its result is stored it goes to the done folder (or is
/// deleted, by config). The frame is on disk, flushed and renamed into place, before the trigger returns, so a frame
/// the camera gave is not lost to a kill or a power cut before its result is stored, and the image a result was made
/// from is kept beside the inbox's. Its name is <see cref="FilePrefix"/>, the UTC time and the start of its SHA-256.
/// Triggers that arrive while a capture is running are dropped: one press, one image. A trigger that finds
/// <c>maxBacklog</c> or more captures waiting in the inbox is refused: each accepted trigger writes a frame, and a flood
/// of capture commands wrote frames faster than they were classified, until the disk was full. Dropped and refused
/// triggers are logged at the 1st, 10th, 100th ... of a run, not one line each. A capture with no frame after
/// its timeout is a failed one (the binding's wait for a frame has none). A failed capture never
/// escapes (the trigger runs detached from the button's event thread and the MQTT receive path): it is logged as an
/// error and reported through <see cref="StateChanged"/>, which the daemon turns into its retained status.
/// </summary>
public sealed class CameraTrigger : IDisposable
{
    private readonly ICameraSource _camera;
    private readonly CaptureButton? _button;
    private readonly string _inbox;
    private readonly ILogger _log;
    private readonly Lock _stateLock = new();
    private CameraState _state;
    private int _busy;

    /// <summary>Start of the name of a camera frame in the inbox (<see cref="IsOwnFrame"/> tells the daemon's frames from others so named).</summary>
    public const string FilePrefix = "camera-";

    /// <summary>
    /// Start of the name of a frame's temporary file while it is written (<c>.qanad-camera-....jpg.tmp</c>), which a kill
    /// leaves behind and the next start removes. Another program's <c>camera-0001.jpg.tmp</c> in the inbox is its capture
    /// on its way: removing every <c>camera-*.tmp</c> at start lost it.
    /// </summary>
    public const string TemporaryPrefix = CaptureDisposition.ClaimPrefix + FilePrefix;

    /// <summary>
    /// Whether <paramref name="item"/> is a frame this daemon wrote: its name ends with the start of the SHA-256 of its
    /// bytes, which another writer's name matches only by a chance of 1 in 2^48 (only a name of the frame's form is
    /// hashed). The name alone gave the source "camera" to any capture so named, and a capture app's slow-written
    /// camera-0001.jpg lost the grace a file not yet finished gets (camera frames are renamed into place whole, so they
    /// need none).
    /// </summary>
    public static bool IsOwnFrame(CaptureItem item)
    {
        const int hashChars = 12;
        const string extension = ".jpg";
        string name = item.DisplayName;
        if (!name.StartsWith(FilePrefix, StringComparison.Ordinal) || !name.EndsWith(extension, StringComparison.Ordinal)
            || name.Length < FilePrefix.Length + hashChars + 1 + extension.Length || name[^(extension.Length + hashChars + 1)] != '-')
            return false;
        ReadOnlySpan<char> hash = name.AsSpan(name.Length - extension.Length - hashChars, hashChars);
        return hash.SequenceEqual(item.Sha256.AsSpan(0, hashChars));
    }

    private readonly TimeSpan _timeout;
    private readonly int _maxBacklog;
    private readonly WholeFileOptions _durable;
    // Triggers dropped while a capture ran, since the last capture during which none was dropped: a flood drops most of
    // its triggers while the one it got in captures, so a run ends only once a capture goes by without a drop.
    private long _ignored;
    // Triggers refused in a row for the inbox backlog; the next accepted trigger ends the run.
    private long _refused;
    // Captures failed in a row; the next one that writes its frame ends the run.
    private long _failed;

    /// <param name="captureTimeout">How long a capture may wait for its frame (default 10 s) before it is a failed one.</param>
    /// <param name="maxBacklog">Captures waiting in the inbox at which a trigger is refused (Qana:Camera:MaxBacklog).</param>
    /// <param name="syncFolder">Flushes the inbox folder after a frame is renamed into it (a test's stand-in); by default <see cref="DurableFile.SyncDirectory"/>.</param>
    public CameraTrigger(ICameraSource camera, CaptureButton? button, string inbox, ILogger log, TimeSpan? captureTimeout = null, int maxBacklog = 32,
        Action<string>? syncFolder = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxBacklog, 1);
        _camera = camera; _button = button; _inbox = inbox; _log = log; _maxBacklog = maxBacklog;
        _durable = DurableFile.Options(syncFolder) with { TemporaryPrefix = CaptureDisposition.ClaimPrefix };
        _timeout = captureTimeout ?? TimeSpan.FromSeconds(10);
        _state = new CameraState(camera.Name, "ready", null, DateTime.UtcNow);
        if (_button is not null) _button.Pressed += () => _ = TriggerAsync("button");
    }

    public string Name => _camera.Name;

    /// <summary>The outcome of the last capture ("ready" before the first).</summary>
    public CameraState State { get { lock (_stateLock) return _state; } }

    /// <summary>Raised when the camera goes from working to failing or back.</summary>
    public event Action<CameraState>? StateChanged;

    /// <summary>
    /// Captures one frame; returns false when a capture was already running, the inbox backlog refused it, or the
    /// camera failed.
    /// </summary>
    public async Task<bool> TriggerAsync(string why)
    {
        if (Interlocked.Exchange(ref _busy, 1) == 1)
        {
            long ignored = Interlocked.Increment(ref _ignored);
            if (Logging.IsReported(ignored))
                _log.LogInformation("Capture trigger ({Why}) ignored: a capture is running ({Count} in a row; reported at 1, 10, 100 ...)", why, ignored);
            return false;
        }
        long ignoredBefore = Interlocked.Read(ref _ignored);
        bool accepted = false;
        try
        {
            // Counted under _busy: one listing at a time, and no longer than the limit, on the MQTT receive path.
            int backlog = Backlog();
            if (backlog >= _maxBacklog)
            {
                long refused = Interlocked.Increment(ref _refused);
                if (Logging.IsReported(refused))
                    _log.LogWarning("Capture trigger ({Why}) refused: {Backlog} captures wait in the inbox, Qana:Camera:MaxBacklog is {Max} ({Count} in a row; reported at 1, 10, 100 ...)",
                        why, backlog, _maxBacklog, refused);
                return false;
            }
            long wasRefused = Interlocked.Exchange(ref _refused, 0);
            if (wasRefused > 0)
                _log.LogWarning("Capture triggers accepted again: {Backlog} captures wait in the inbox, below Qana:Camera:MaxBacklog {Max}, after {Count} refused",
                    backlog, _maxBacklog, wasRefused);
            accepted = true;
            // The binding waits for a frame (VIDIOC_DQBUF on a blocking descriptor) with no timeout and checks its
            // cancellation only between frames, so a camera that stops streaming held the capture for ever: the status
            // said "ready" and every later trigger was dropped as "a capture is running". Past the timeout the capture
            // is a failed one; the device call cannot be interrupted, so triggers stay dropped until it returns, and a
            // frame it returns then is not what was in front of the lens at the trigger: it is dropped.
            Task<byte[]> capture = Task.Run(_camera.CaptureJpeg);
            using var timer = new CancellationTokenSource();
            Task expired = await Task.WhenAny(capture, Task.Delay(_timeout, timer.Token)).ConfigureAwait(false);
            timer.Cancel();
            if (expired != capture)
            {
                string error = $"{_camera.Name}: no frame within {_timeout.TotalSeconds:0.###} s (the camera stopped streaming?)";
                Failed(why, error);
                byte[] lateFrame = await capture.ConfigureAwait(false);
                _log.LogWarning("Camera {Camera} gave a frame ({Bytes} bytes) after the capture ({Why}) had failed; dropped", _camera.Name, lateFrame.Length, why);
                SetState("ready", null);
                return false;
            }
            byte[] frame = await capture.ConfigureAwait(false);
            await Task.Run(() =>
            {
                string sha = Convert.ToHexStringLower(SHA256.HashData(frame));
                // Time and hash: unique, because one capture runs at a time; the same name again is the same bytes.
                string path = Path.Combine(_inbox, $"{FilePrefix}{DateTime.UtcNow:yyyyMMdd'T'HHmmssfff'Z'}-{sha[..12]}.jpg");
                Directory.CreateDirectory(_inbox);
                try { WholeFile.Write(path, frame, _durable); } // under a hidden .tmp name of the daemon's own, then renamed into place
                catch (FolderSyncException e)
                {
                    // The frame is whole under its name, and the watcher may have taken it already: it is a capture, to be
                    // classified like any other. Reporting it failed (as before) was untrue; what the failed flush risks, the
                    // frame's name not surviving a power cut, is said here.
                    _log.LogWarning("Captured {Bytes} bytes from {Camera} ({Why}) as {File}, but the inbox could not be flushed: a power cut before its result is stored may lose it ({Error})",
                        frame.Length, _camera.Name, why, Path.GetFileName(path), e.InnerException?.Message ?? e.Message);
                    return;
                }
                _log.LogInformation("Captured {Bytes} bytes from {Camera} ({Why}) as {File}", frame.Length, _camera.Name, why, Path.GetFileName(path));
            }).ConfigureAwait(false);
            long failed = Interlocked.Exchange(ref _failed, 0);
            if (failed > 0) _log.LogInformation("Camera {Camera} captured again after {Count} failed captures", _camera.Name, failed);
            SetState("ready", null);
            return true;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // CameraException is the expected kind (device gone, not MJPEG, cut-short frame); anything else from a
            // driver binding is reported the same way rather than lost in a detached task.
            string error = e is CameraException ? e.Message : $"{_camera.Name}: {e.GetType().Name}: {e.Message}";
            Failed(why, error);
            return false;
        }
        finally
        {
            // A capture during which no trigger was dropped ends the run of dropped ones (left as it is otherwise).
            if (accepted && ignoredBefore > 0 && Interlocked.CompareExchange(ref _ignored, 0, ignoredBefore) == ignoredBefore)
                _log.LogInformation("{Count} capture triggers were ignored while captures ran", ignoredBefore);
            Volatile.Write(ref _busy, 0);
        }
    }

    /// <summary>
    /// Captures waiting in the inbox (files under a name the watcher takes), counted up to <see cref="_maxBacklog"/>:
    /// they are on disk until their results are stored and they are moved, whichever source wrote them. An inbox that
    /// cannot be listed counts as empty; writing the frame then fails and says why.
    /// </summary>
    private int Backlog()
    {
        int count = 0;
        try
        {
            foreach (string path in Directory.EnumerateFiles(_inbox))
                if (!InboxWatcher.IsTemporaryName(Path.GetFileName(path)) && ++count >= _maxBacklog) break;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return 0; }
        return count;
    }

    /// <summary>
    /// A failed capture: an error at the 1st, 10th, 100th ... in a row, and the status. A camera that is gone fails each
    /// capture at once, so every command of a flood got through to fail, with an error line each.
    /// </summary>
    private void Failed(string why, string error)
    {
        long failed = Interlocked.Increment(ref _failed);
        if (Logging.IsReported(failed))
            _log.LogError("Camera capture ({Why}) failed ({Count} in a row; reported at 1, 10, 100 ...): {Error}", why, failed, error);
        SetState("failed", error);
    }

    private void SetState(string state, string? error)
    {
        CameraState next;
        lock (_stateLock)
        {
            if (_state.State == state && _state.Error == error) return;
            _state = next = new CameraState(_camera.Name, state, error, DateTime.UtcNow);
        }
        StateChanged?.Invoke(next);
    }

    /// <summary>Longest a stop waits for a capture that is running before it closes the camera anyway.</summary>
    public static readonly TimeSpan StopWait = TimeSpan.FromSeconds(3);

    public void Dispose()
    {
        _button?.Dispose();
        // A capture that is running ends before the camera closes, and none starts after (_busy is kept). Closing the
        // device under the binding's capture loop makes each later VIDIOC_DQBUF fail with EBADF, which the binding does
        // not check: it hands over its buffer 0 as it stands, a warm-up frame, which became the capture. Bounded, as a
        // camera that stopped streaming never ends its capture (the systemd stop timeout is shared with the workers).
        var waited = System.Diagnostics.Stopwatch.StartNew();
        TimeSpan bound = _timeout < StopWait ? _timeout : StopWait;
        while (Interlocked.CompareExchange(ref _busy, 1, 0) != 0 && waited.Elapsed < bound) Thread.Sleep(10);
        _camera.Dispose();
    }
}

/// <summary>What the retained status says about the camera: its name, "ready", "failed" or "unavailable", and why.</summary>
public sealed record CameraState(string Name, string State, string? Error, DateTime AtUtc);
