using Iot.Device.Media;

namespace QanaEdge.Devices.Camera;

/// <summary>
/// A V4L2 camera (e.g. a USB dermatoscope) through Iot.Device.Media.VideoDevice, asked for MJPEG so that every
/// frame is already a JPEG file and no colour conversion runs on the board. The <see cref="VideoDevice"/> is the
/// test seam: tests hand in a subclass that emulates the device's frame buffer.
/// </summary>
public sealed class V4l2CameraSource : ICameraSource
{
    private readonly VideoDevice _device;

    public V4l2CameraSource(VideoDevice device)
    {
        ArgumentNullException.ThrowIfNull(device);
        _device = device;
        Name = $"v4l2 {device.DevicePath}{device.Settings.BusId} {device.Settings.CaptureSize.Width}x{device.Settings.CaptureSize.Height}";
    }

    /// <summary>Opens /dev/video{index} for MJPEG frames of the given size.</summary>
    public static V4l2CameraSource Open(int index, uint width, uint height)
    {
        string path = $"/dev/video{index}";
        if (!File.Exists(path)) throw new CameraException($"camera: {path} does not exist");
        try
        {
            var settings = new VideoConnectionSettings(index, (width, height), VideoPixelFormat.MJPEG);
            return new V4l2CameraSource(VideoDevice.Create(settings));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidOperationException or NotSupportedException)
        {
            throw new CameraException($"camera: cannot open {path}: {e.Message}", e);
        }
    }

    public string Name { get; }

    public byte[] CaptureJpeg()
    {
        byte[] buffer;
        try { buffer = _device.Capture(); }
        catch (Exception e) when (e is IOException or InvalidOperationException or TimeoutException or UnauthorizedAccessException or NotSupportedException)
        {
            throw new CameraException($"{Name}: capture failed: {e.Message}", e);
        }
        // An MJPEG frame starts with the JPEG SOI marker; anything else means the driver ignored the format.
        if (buffer.Length < 4 || buffer[0] != 0xFF || buffer[1] != 0xD8)
            throw new CameraException($"{Name}: the frame is not a JPEG ({buffer.Length} bytes); the device may not support MJPEG");
        // The binding hands back the whole driver buffer; the image is only its first JpegFrame.Length bytes.
        int length = JpegFrame.Length(buffer);
        if (length < 0)
            throw new CameraException($"{Name}: the JPEG frame is cut short (no end of image in {buffer.Length} bytes)");
        return length == buffer.Length ? buffer : buffer.AsSpan(0, length).ToArray();
    }

    public void Dispose() => _device.Dispose();
}
