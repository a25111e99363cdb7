using System.Diagnostics;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using QanaEdge.Devices.Camera;
using QanaEdge.Devices.Gpio;

namespace QanaEdge.Daemon.Capture;

/// <summary>
/// Takes one camera frame per trigger (GPIO button press or MQTT capture command) and hands it to the pipeline.
/// Triggers that arrive while a capture is running are dropped: one press, one image.
/// </summary>
public sealed class CameraTrigger : IDisposable
{
    private readonly ICameraSource _camera;
    private readonly CaptureButton? _button;
    private readonly ChannelWriter<CaptureItem> _output;
    private readonly ILogger _log;
    private int _busy;

    public CameraTrigger(ICameraSource camera, CaptureButton? button, ChannelWriter<CaptureItem> output, ILogger log)
    {
        _camera = camera; _button = button; _output = output; _log = log;
        if (_button is not null) _button.Pressed += () => _ = TriggerAsync("button");
    }

    public string Name => _camera.Name;

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
            return true;
        }
        catch (CameraException e)
        {
            _log.LogError("Camera capture ({Why}) failed: {Error}", why, e.Message);
            return false;
        }
        finally { Volatile.Write(ref _busy, 0); }
    }

    public void Dispose()
    {
        _button?.Dispose();
        _camera.Dispose();
    }
}
