using System.Buffers;
using System.Security.Cryptography;
using Iot.Device.Media;

namespace QanaEdge.Devices.Camera;

/// <summary>
/// A V4L2 camera (e.g. a USB dermatoscope) through Iot.Device.Media.VideoDevice, asked for MJPEG so that every
/// frame is already a JPEG file and no colour conversion runs on the board. The <see cref="VideoDevice"/> is the
/// test seam: tests hand in a subclass that emulates the device's frame buffers.
/// </summary>
/// <remarks>
/// Each capture starts the stream, lets <see cref="WarmupFrames"/> frames go by and keeps the next one. A camera's
/// auto-exposure and white balance only start adjusting once frames flow, so the first frames after STREAMON come out
/// too dark or too bright; the binding's <see cref="VideoDevice.Capture()"/> returns exactly that first frame. The
/// continuous capture dequeues each frame, copies it out and queues its buffer again before handing over the copy,
/// so a warm-up frame costs only its copy (a pooled array, returned at once) and the note of the JPEG it left in its
/// buffer, against which a frame cut short is told (<see cref="EndsAsAnEarlierFrame"/>).
/// </remarks>
public sealed class V4l2CameraSource : ICameraSource
{
    /// <summary>Frames dropped after stream-on unless configured otherwise: 5, about 170 ms at 30 frames per second.</summary>
    public const int DefaultWarmupFrames = 5;

    private readonly VideoDevice _device;
    private int _framesSeen;
    private byte[]? _kept;
    private int _keptLength;
    private CancellationTokenSource? _stop;
    // The JPEGs of the last frames dequeued, in every buffer the driver may hand over again (the binding has four):
    // a frame cut short leaves the rest of its buffer as the frame before it there had it (FrameSeen).
    private readonly FrameSeen[] _recent = new FrameSeen[RecentFrames];
    private int _recentNext;

    /// <summary>Frames remembered for <see cref="EndsAsAnEarlierFrame"/>: twice the binding's four buffers.</summary>
    private const int RecentFrames = 8;

    /// <summary>Bytes before the end of image compared with an earlier frame's (<see cref="EndsAsAnEarlierFrame"/>).</summary>
    private const int TailBytes = 32;

    /// <summary>
    /// A JPEG seen in a driver buffer: its length, its last <see cref="TailBytes"/> bytes and the SHA-256 of all of it.
    /// </summary>
    private readonly record struct FrameSeen(int Length, byte[] Tail, byte[] Digest);

    /// <param name="device">The video device. Owned by this source.</param>
    /// <param name="warmupFrames">Frames dequeued and dropped after stream-on before the one that is kept.</param>
    public V4l2CameraSource(VideoDevice device, int warmupFrames = DefaultWarmupFrames)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentOutOfRangeException.ThrowIfNegative(warmupFrames);
        _device = device;
        WarmupFrames = warmupFrames;
        // Frames come in arrays from ArrayPool<byte>.Shared, given back here once read: warm-up frames allocate nothing.
        _device.ImageBufferPoolingEnabled = true;
        Name = $"v4l2 {device.DevicePath}{device.Settings.BusId} {device.Settings.CaptureSize.Width}x{device.Settings.CaptureSize.Height}";
    }

    /// <summary>Opens /dev/video{index} for MJPEG frames of the given size.</summary>
    public static V4l2CameraSource Open(int index, uint width, uint height, int warmupFrames = DefaultWarmupFrames)
    {
        string path = $"/dev/video{index}";
        if (!File.Exists(path)) throw new CameraException($"camera: {path} does not exist");
        try
        {
            var settings = new VideoConnectionSettings(index, (width, height), VideoPixelFormat.MJPEG);
            return new V4l2CameraSource(VideoDevice.Create(settings), warmupFrames);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidOperationException or NotSupportedException)
        {
            throw new CameraException($"camera: cannot open {path}: {e.Message}", e);
        }
    }

    public string Name { get; }

    /// <summary>Frames dropped after stream-on before the one a capture keeps.</summary>
    public int WarmupFrames { get; }

    public byte[] CaptureJpeg()
    {
        _framesSeen = 0;
        _kept = null;
        using var stop = new CancellationTokenSource();
        _stop = stop;
        _device.NewImageBufferReady += OnFrame;
        try
        {
            _device.StartCaptureContinuous();
            // The binding stops streaming only when the loop ends normally; stopping closes the device either way.
            try { _device.CaptureContinuous(stop.Token); }
            finally { _device.StopCaptureContinuous(); }
        }
        catch (Exception e) when (e is IOException or InvalidOperationException or TimeoutException or UnauthorizedAccessException or NotSupportedException)
        {
            ReturnKept();
            throw new CameraException($"{Name}: capture failed: {e.Message}", e);
        }
        finally
        {
            _device.NewImageBufferReady -= OnFrame;
            _stop = null;
        }
        if (_kept is null) throw new CameraException($"{Name}: the stream ended without a frame");
        try { return Cut(_kept.AsSpan(0, _keptLength)); }
        finally { ReturnKept(); }
    }

    /// <summary>
    /// One frame from the binding, its V4L2 buffer already queued again. Nothing here throws: an exception would leave
    /// the binding's loop before STREAMOFF.
    /// </summary>
    private void OnFrame(object sender, NewImageBufferReadyEventArgs e)
    {
        if (_kept is not null || _framesSeen++ < WarmupFrames)
        {
            // Exposure still settling (or a frame after the kept one): dropped, but what it left in its buffer is noted.
            Remember(e.ImageBuffer.AsSpan(0, e.Length));
            ArrayPool<byte>.Shared.Return(e.ImageBuffer);
            return;
        }
        _kept = e.ImageBuffer;
        _keptLength = e.Length;
        _stop?.Cancel();
    }

    private void ReturnKept()
    {
        if (_kept is not null) ArrayPool<byte>.Shared.Return(_kept);
        _kept = null;
    }

    /// <summary>The JPEG at the start of a driver buffer, or why there is none.</summary>
    private byte[] Cut(ReadOnlySpan<byte> buffer)
    {
        // An MJPEG frame starts with the JPEG SOI marker; anything else means the driver ignored the format.
        if (buffer.Length < 4 || buffer[0] != 0xFF || buffer[1] != 0xD8)
            throw new CameraException($"{Name}: the frame is not a JPEG ({buffer.Length} bytes); the device may not support MJPEG");
        // The binding hands back the whole driver buffer; the image is only its first JpegFrame.Length bytes.
        int length = JpegFrame.Length(buffer);
        if (length < 0)
            throw new CameraException($"{Name}: the JPEG frame is cut short (no end of image in {buffer.Length} bytes)");
        ReadOnlySpan<byte> jpeg = buffer[..length];
        if (EndsAsAnEarlierFrame(jpeg))
            throw new CameraException($"{Name}: the JPEG frame is cut short (its end of image, after {length} bytes, is an earlier frame's, left in the driver buffer)");
        Remember(jpeg);
        return jpeg.ToArray();
    }

    /// <summary>
    /// Notes the JPEG at the start of a driver buffer (nothing when there is none). Never throws: it runs in the
    /// binding's capture loop.
    /// </summary>
    private void Remember(ReadOnlySpan<byte> buffer)
    {
        int length = JpegFrame.Length(buffer);
        if (length < TailBytes) return;
        ReadOnlySpan<byte> jpeg = buffer[..length];
        _recent[_recentNext] = new FrameSeen(length, jpeg[^TailBytes..].ToArray(), SHA256.HashData(jpeg));
        _recentNext = (_recentNext + 1) % _recent.Length;
    }

    /// <summary>
    /// Whether <paramref name="jpeg"/> is another frame's start joined to an earlier frame's end. A driver fills only the
    /// bytes a frame uses and the binding hands over the whole buffer, so a frame cut short (a lost USB packet) is
    /// followed by what the frame before it in that buffer left, and the end of image <see cref="JpegFrame.Length"/> finds
    /// is that frame's: the JPEG walked to it decodes, its lower part from the other frame, and was classified as the
    /// lesion in front of the lens. Such a JPEG ends exactly where an earlier frame ended, with that frame's last bytes,
    /// yet is not that frame; two whole frames that differ almost never have the same length and the same last
    /// <see cref="TailBytes"/> bytes, and a frame identical to an earlier one is whole. Those bytes must be scan data
    /// (at least <see cref="ScanDataValues"/> different values): an encoder that pads its frames to one size with fill
    /// bytes ends every frame alike, and each would be refused after the first.
    /// </summary>
    private bool EndsAsAnEarlierFrame(ReadOnlySpan<byte> jpeg)
    {
        if (jpeg.Length < TailBytes || !LooksLikeScanData(jpeg[^TailBytes..^2])) return false;
        byte[]? digest = null;
        foreach (FrameSeen seen in _recent)
        {
            if (seen.Tail is null || seen.Length != jpeg.Length || !jpeg[^TailBytes..].SequenceEqual(seen.Tail)) continue;
            digest ??= SHA256.HashData(jpeg);
            if (!digest.AsSpan().SequenceEqual(seen.Digest)) return true;
        }
        return false;
    }

    /// <summary>Different byte values in the last bytes before an end of image that entropy-coded data has and padding has not.</summary>
    private const int ScanDataValues = 8;

    private static bool LooksLikeScanData(ReadOnlySpan<byte> bytes)
    {
        Span<bool> seen = stackalloc bool[256];
        int values = 0;
        foreach (byte b in bytes)
        {
            if (seen[b]) continue;
            seen[b] = true;
            if (++values >= ScanDataValues) return true;
        }
        return false;
    }

    public void Dispose() => _device.Dispose();
}
