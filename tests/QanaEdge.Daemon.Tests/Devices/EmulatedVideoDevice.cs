using System.Buffers;
using Iot.Device.Media;

namespace QanaEdge.Daemon.Tests.Devices;

/// <summary>
/// A V4L2 capture device emulated at the Iot.Device.Media binding's boundary, behaving the way UnixVideoDevice does
/// on a real /dev/videoN:
/// <list type="bullet">
/// <item>VIDIOC_S_FMT negotiation: a pixel format the device lacks is replaced by its first supported one (the binding
/// does not check what the driver chose), so a camera without MJPEG hands back raw YUYV.</item>
/// <item>The binding's buffer handling, ioctl by ioctl (<see cref="Ioctls"/>): VIDIOC_REQBUFS for four mmap buffers,
/// VIDIOC_QBUF of each, VIDIOC_STREAMON, then per frame VIDIOC_DQBUF, a copy of the buffer, VIDIOC_QBUF of the same
/// buffer, and VIDIOC_STREAMOFF at the end. <c>Capture()</c> takes one frame; <c>CaptureContinuous</c> raises
/// <c>NewImageBufferReady</c> for each frame, after its buffer is queued again, until the token is cancelled (checked
/// before each frame), in an array from <see cref="ArrayPool{T}.Shared"/> when <c>ImageBufferPoolingEnabled</c>. A
/// VIDIOC_DQBUF with no buffer queued would block forever on a real device; here it throws.</item>
/// <item>A frame is the whole mmap'ed buffer, sizeimage bytes (width × height × 2, what UVC drivers report for
/// MJPEG), not the bytes the frame used: the JPEG is followed by whatever the buffer held before (zeros when fresh,
/// the tail of an older, longer frame when reused).</item>
/// <item>A sensor that stops streaming (<see cref="Stalled"/>): VIDIOC_DQBUF blocks until frames come again; the
/// binding checks its cancellation token only between frames, so nothing on the binding's side ends the wait.</item>
/// <item>Closing the device (<c>Dispose</c>) while a continuous capture runs closes its descriptor under the loop: each
/// VIDIOC_DQBUF then fails with EBADF, unchecked by the binding, which hands over buffer 0 as it stands, again and
/// again.</item>
/// <item>Auto-exposure settles only once frames flow: the first frames after each VIDIOC_STREAMON are
/// <see cref="SettlingFrames"/>, then <see cref="Scene"/>.</item>
/// <item>A device that went away fails at open with the binding's own message
/// ("Error 19. Can not open video device file '/dev/video0'."; 19 is ENODEV); a device busy in a continuous capture
/// refuses <c>Capture()</c> with "The VideoDevice is already in use.".</item>
/// </list>
/// What the sensor sees is <see cref="Scene"/>: the JPEG its MJPEG encoder produces, here a real HAM10000 file.
/// </summary>
public sealed class EmulatedVideoDevice : VideoDevice
{
    private const int Enodev = 19;
    private const int BufferCount = 4; // UnixVideoDevice's
    private readonly VideoConnectionSettings _settings;
    private readonly VideoPixelFormat[] _supported;
    private readonly byte[][] _buffers;
    private readonly Queue<int> _queued = new();
    private readonly List<string> _ioctls = [];
    private readonly Lock _lock = new();
    private int _captures;
    private int _unpluggedOpens;
    private int _sequence; // frames since VIDIOC_STREAMON
    private volatile bool _capturing;
    private bool _open;
    private bool _disposed;

    public EmulatedVideoDevice(VideoConnectionSettings settings, params VideoPixelFormat[] supported)
    {
        _settings = settings;
        _supported = supported.Length > 0 ? supported : [VideoPixelFormat.MJPEG];
        (uint width, uint height) = settings.CaptureSize;
        _buffers = new byte[BufferCount][];
        for (int i = 0; i < BufferCount; i++) _buffers[i] = new byte[checked((int)(width * height * 2))];
    }

    /// <summary>The JPEG the device's encoder produces for what is in front of the lens, once exposure has settled.</summary>
    public byte[] Scene { get; set; } = [];

    /// <summary>What the encoder produces for the first frames after each stream-on, while auto-exposure settles.</summary>
    public byte[][] SettlingFrames { get; set; } = [];

    /// <summary>The device node is gone (USB camera unplugged).</summary>
    public bool Unplugged { get; set; }

    /// <summary>
    /// The sensor stopped streaming (a UVC camera that stalls, a starved USB bus): VIDIOC_DQBUF blocks, as it does on a
    /// blocking file descriptor with no frame coming, until streaming resumes.
    /// </summary>
    public bool Stalled
    {
        get => !_streaming.IsSet;
        set { if (value) _streaming.Reset(); else _streaming.Set(); }
    }

    private readonly ManualResetEventSlim _streaming = new(initialState: true);

    /// <summary>Time the sensor takes per frame: VIDIOC_DQBUF returns once it has passed (zero: at once).</summary>
    public TimeSpan FrameInterval { get; set; }

    /// <summary>Streams started so far (VIDIOC_STREAMON; one per capture).</summary>
    public int Captures => Volatile.Read(ref _captures);

    /// <summary>Times a capture tried to open the device while it was unplugged (each failed with ENODEV).</summary>
    public int UnpluggedOpens => Volatile.Read(ref _unpluggedOpens);

    /// <summary>The ioctls of the streams so far, e.g. "DQBUF 2", "QBUF 2", "STREAMON".</summary>
    public string[] Ioctls { get { lock (_lock) return [.. _ioctls]; } }

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
        Open();
        try
        {
            StreamOn();
            byte[] frame = Dequeue(pooled: false, out _);
            StreamOff();
            return frame;
        }
        finally { _open = false; }
    }

    public override void Capture(string path) => File.WriteAllBytes(path, Capture());

    public override void StartCaptureContinuous() => Open();

    public override void CaptureContinuous(CancellationToken token)
    {
        if (!_open) throw new InvalidOperationException("CaptureContinuous before StartCaptureContinuous: the device is not open");
        // As the binding: no try/finally, so an exception leaves the stream on until the device is closed.
        _capturing = true;
        StreamOn();
        while (!token.IsCancellationRequested)
        {
            byte[] frame = Dequeue(ImageBufferPoolingEnabled, out int length);
            NewImageBufferReady?.Invoke(this, new NewImageBufferReadyEventArgs(frame, length));
        }
        StreamOff();
        _capturing = false;
    }

    public override void StopCaptureContinuous() => _open = false;

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

    private void Open()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (Unplugged)
        {
            Interlocked.Increment(ref _unpluggedOpens);
            throw new IOException($"Error {Enodev}. Can not open video device file '{DevicePath}{_settings.BusId}'.");
        }
        _open = true;
    }

    /// <summary>VIDIOC_REQBUFS, VIDIOC_QBUF of every buffer, VIDIOC_STREAMON: the sensor starts, exposure unsettled.</summary>
    private void StreamOn()
    {
        lock (_lock)
        {
            _ioctls.Add($"REQBUFS {BufferCount}");
            _queued.Clear();
            for (int i = 0; i < BufferCount; i++) { _queued.Enqueue(i); _ioctls.Add($"QBUF {i}"); }
            _ioctls.Add("STREAMON");
        }
        _sequence = 0;
        Interlocked.Increment(ref _captures);
    }

    private void StreamOff()
    {
        lock (_lock) _ioctls.Add("STREAMOFF");
    }

    /// <summary>
    /// VIDIOC_DQBUF (the driver filled the oldest queued buffer with the next frame), the binding's copy of the whole
    /// buffer, VIDIOC_QBUF of the same buffer.
    /// </summary>
    private byte[] Dequeue(bool pooled, out int length)
    {
        if (_disposed)
        {
            // The descriptor was closed under the running loop: VIDIOC_DQBUF fails with EBADF, which the binding does
            // not check, so it copies buffer 0 (its v4l2_buffer's index still 0) as it stands and hands it over.
            lock (_lock) _ioctls.Add("DQBUF EBADF");
            length = _buffers[0].Length;
            byte[] stale = pooled ? ArrayPool<byte>.Shared.Rent(length) : new byte[length];
            _buffers[0].CopyTo(stale, 0);
            return stale;
        }
        _streaming.Wait(); // VIDIOC_DQBUF sleeps until the driver completes a buffer
        if (FrameInterval > TimeSpan.Zero) Thread.Sleep(FrameInterval);
        int index;
        lock (_lock)
        {
            if (!_queued.TryDequeue(out index)) throw new InvalidOperationException("VIDIOC_DQBUF with no buffer queued: a real device blocks forever");
            _ioctls.Add($"DQBUF {index}");
        }
        byte[] buffer = _buffers[index];
        VideoPixelFormat format = _supported.Contains(_settings.PixelFormat) ? _settings.PixelFormat : _supported[0];
        NegotiatedFormat = format;
        int sequence = _sequence++;
        if (format == VideoPixelFormat.MJPEG)
        {
            byte[] jpeg = sequence < SettlingFrames.Length ? SettlingFrames[sequence] : Scene;
            if (jpeg.Length > buffer.Length) throw new InvalidOperationException("scene larger than the driver buffer");
            jpeg.CopyTo(buffer, 0); // the rest of the buffer keeps what it held
        }
        else
        {
            // YUYV 4:2:2 of a mid-grey frame: Y U Y V = 0x80 each.
            buffer.AsSpan().Fill(0x80);
        }
        length = buffer.Length;
        byte[] copy = pooled ? ArrayPool<byte>.Shared.Rent(length) : new byte[length];
        buffer.CopyTo(copy, 0);
        lock (_lock)
        {
            _queued.Enqueue(index);
            _ioctls.Add($"QBUF {index}");
        }
        return copy;
    }
}
