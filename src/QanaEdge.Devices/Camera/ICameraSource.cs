namespace QanaEdge.Devices.Camera;

/// <summary>A still-image source: one call, one encoded image (JPEG bytes). Not thread-safe.</summary>
public interface ICameraSource : IDisposable
{
    string Name { get; }

    /// <summary>Grabs one frame. Throws <see cref="CameraException"/> when the device gives nothing usable.</summary>
    byte[] CaptureJpeg();
}

public sealed class CameraException(string message, Exception? inner = null) : Exception(message, inner);
