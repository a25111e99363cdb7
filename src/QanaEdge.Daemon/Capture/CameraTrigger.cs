using System.Diagnostics;
using Microsoft.Extensions.Logging;
using QanaEdge.Devices.Camera;
using QanaEdge.Devices.Gpio;

namespace QanaEdge.Daemon.Capture;

/// <summary>
/// Takes one camera frame per trigger (GPIO button press or MQTT capture command) and hands it to the pipeline.
/// Triggers that arrive while a capture is running are dropped: one press, one image. A failed capture never
/// escapes (the trigger runs detached from the button's event thread and the MQTT receive path): it is logged as an
/// error and reported through <see cref="StateChanged"/>, which the daemon turns into its retained status.
/// </summary>
public sealed class CameraTrigger : IDisposable
{
    private readonly ICameraSource _camera;
    private readonly CaptureButton? _button;
    private readonly CaptureQueue _output;
    private readonly ILogger _log;
    private readonly Lock _stateLock = new();
    private CameraState _state;
    private int _busy;

    public CameraTrigger(ICameraSource camera, CaptureButton? button, CaptureQueue output, ILogger log)
    {
        _camera = camera; _button = button; _output = output; _log = log;
        _state = new CameraState(camera.Name, "ready", null, DateTime.UtcNow);
        if (_button is not null) _button.Pressed += () => _ = TriggerAsync("button");
    }

    public string Name => _camera.Name;

    /// <summary>The outcome of the last capture ("ready" before the first).</summary>
    public CameraState State { get { lock (_stateLock) return _state; } }

    /// <summary>Raised when the camera goes from working to failing or back.</summary>
    public event Action<CameraState>? StateChanged;

    /// <summary>Captures one frame; returns false when a capture was already running or the camera failed.</summary>
    public async Task<bool> TriggerAsync(string why)
    {
        if (Interlocked.Exchange(ref _busy, 1) == 1) { _log.LogInformation("Capture trigger ({Why}) ignored: a capture is running", why); return false; }
        try
        {
            long landed = Stopwatch.GetTimestamp();
            byte[] frame = await Task.Run(_camera.CaptureJpeg).ConfigureAwait(false);
            await _output.WriteAsync(new CaptureItem(null, frame, "camera", DateTime.UtcNow, landed)).ConfigureAwait(false);
            _log.LogInformation("Captured {Bytes} bytes from {Camera} ({Why})", frame.Length, _camera.Name, why);
            SetState("ready", null);
            return true;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // CameraException is the expected kind (device gone, not MJPEG, cut-short frame); anything else from a
            // driver binding is reported the same way rather than lost in a detached task.
            string error = e is CameraException ? e.Message : $"{_camera.Name}: {e.GetType().Name}: {e.Message}";
            _log.LogError("Camera capture ({Why}) failed: {Error}", why, error);
            SetState("failed", error);
            return false;
        }
        finally { Volatile.Write(ref _busy, 0); }
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

    public void Dispose()
    {
        _button?.Dispose();
        _camera.Dispose();
    }
}

/// <summary>What the retained status says about the camera: its name, "ready", "failed" or "unavailable", and why.</summary>
public sealed record CameraState(string Name, string State, string? Error, DateTime AtUtc);
