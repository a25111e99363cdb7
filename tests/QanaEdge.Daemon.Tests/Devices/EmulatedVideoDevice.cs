using Iot.Device.Media;

namespace QanaEdge.Daemon.Tests.Devices;

/// <summary>
/// A V4L2 capture device emulated at the Iot.Device.Media binding's boundary, behaving the way UnixVideoDevice does
/// on a real /dev/videoN:
/// <list type="bullet">
/// <item>VIDIOC_S_FMT negotiation: a pixel format the device lacks is replaced by its first supported one (the binding
/// does not check what the driver chose), so a camera without MJPEG hands back raw YUYV.</item>
/// <item>Capture() returns the whole mmap'ed buffer, sizeimage bytes (width × height × 2, what UVC drivers report
/// for MJPEG), not the bytes the frame used: the JPEG is followed by the zeroed rest of a fresh kernel buffer.</item>
/// <item>A device that went away fails at open with the binding's own message
/// ("Error 19. Can not open video device file '/dev/video0'."; 19 is ENODEV); a device busy in a continuous capture
/// refuses with "The VideoDevice is already in use.".</item>
/// </list>
/// What the sensor sees is <see cref="Scene"/>: the JPEG its MJPEG encoder produces, here a real HAM10000 file.
/// </summary>
public sealed class EmulatedVideoDevice : VideoDevice
{
    private const int Enodev = 19;
    private readonly VideoConnectionSettings _settings;
    private readonly VideoPixelFormat[] _supported;
    private int _captures;
    private volatile bool _capturing;
    private bool _disposed;

    public EmulatedVideoDevice(VideoConnectionSettings settings, params VideoPixelFormat[] supported)
    {
        _settings = settings;
        _supported = supported.Length > 0 ? supported : [VideoPixelFormat.MJPEG];
    }

    /// <summary>The JPEG the device's encoder produces for what is in front of the lens.</summary>
    public byte[] Scene { get; set; } = [];

    /// <summary>The device node is gone (USB camera unplugged).</summary>
    public bool Unplugged { get; set; }

    /// <summary>Frames dequeued so far.</summary>
    public int Captures => Volatile.Read(ref _captures);

    /// <summary>The pixel format the driver settled on in the last capture.</summary>
    public VideoPixelFormat? NegotiatedFormat { get; private set; }

    public override string DevicePath { get; set; } = "/dev/video";
    public override VideoConnectionSettings Settings => _settings;
    public override bool IsOpen => !_disposed && !Unplugged;
    public override bool IsCapturing => _capturing;
    public override bool ImageBufferPoolingEnabled { get; set; }
    public override event NewImageBufferReadyEvent? NewImageBufferReady;

    public override byte[] Capture()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_capturing) throw new IOException("The VideoDevice is already in use.");
        if (Unplugged) throw new IOException($"Error {Enodev}. Can not open video device file '{DevicePath}{_settings.BusId}'.");
        Interlocked.Increment(ref _captures);
        return Dequeue();
    }

    public override void Capture(string path) => File.WriteAllBytes(path, Capture());

    public override void StartCaptureContinuous()
    {
        if (Unplugged) throw new IOException($"Error {Enodev}. Can not open video device file '{DevicePath}{_settings.BusId}'.");
    }

    public override void CaptureContinuous(CancellationToken token)
    {
        _capturing = true;
        try
        {
            while (!token.IsCancellationRequested)
            {
                byte[] frame = Dequeue();
                NewImageBufferReady?.Invoke(this, new NewImageBufferReadyEventArgs(frame, frame.Length));
            }
        }
        finally { _capturing = false; }
    }

    public override void StopCaptureContinuous() { }

    public override VideoDeviceValue GetVideoDeviceValue(VideoDeviceValueType type) => new(type.ToString(), 0, 255, 1, 128, 128);

    public override IEnumerable<VideoPixelFormat> GetSupportedPixelFormats() => _supported;

    public override IEnumerable<Resolution> GetPixelFormatResolutions(VideoPixelFormat format) =>
        _supported.Contains(format)
            ? [new Resolution { Type = ResolutionType.Discrete, MinWidth = _settings.CaptureSize.Width, MaxWidth = _settings.CaptureSize.Width, MinHeight = _settings.CaptureSize.Height, MaxHeight = _settings.CaptureSize.Height }]
            : [];

    protected override void Dispose(bool disposing)
    {
        _disposed = true;
        base.Dispose(disposing);
    }

    /// <summary>One VIDIOC_DQBUF: the frame in a buffer of the driver's sizeimage, as the binding copies it out.</summary>
    private byte[] Dequeue()
    {
        VideoPixelFormat format = _supported.Contains(_settings.PixelFormat) ? _settings.PixelFormat : _supported[0];
        NegotiatedFormat = format;
        (uint width, uint height) = _settings.CaptureSize;
        var buffer = new byte[checked((int)(width * height * 2))];
        if (format == VideoPixelFormat.MJPEG)
        {
            if (Scene.Length > buffer.Length) throw new InvalidOperationException("scene larger than the driver buffer");
            Scene.CopyTo(buffer, 0);
        }
        else
        {
            // YUYV 4:2:2 of a mid-grey frame: Y U Y V = 0x80 each.
            buffer.AsSpan().Fill(0x80);
        }
        return buffer;
    }
}
