namespace QanaEdge.Devices.Camera;

/// <summary>
/// Finds where a JPEG ends inside a V4L2 MJPEG buffer. Iot.Device.Media's UnixVideoDevice returns the whole mmap'ed
/// buffer (its length is the driver's sizeimage), not the bytesused of the frame, so a frame arrives followed by
/// padding or by the stale tail of an older, longer frame. The image is the bytes up to and including the first EOI
/// that ends the last scan: markers are walked by their lengths up to SOS, and in entropy-coded data FF 00 (stuffed
/// byte) and FF D0..D7 (restart markers) are data, not markers (ITU-T T.81 B.1.1.5, F.1.2.3).
/// </summary>
public static class JpegFrame
{
    /// <summary>Length of the JPEG at the start of <paramref name="buffer"/> including EOI, or -1 when there is none or it is cut short.</summary>
    public static int Length(ReadOnlySpan<byte> buffer)
    {
        if (buffer.Length < 4 || buffer[0] != 0xFF || buffer[1] != 0xD8) return -1;
        int i = 2;
        while (i + 1 < buffer.Length)
        {
            if (buffer[i] != 0xFF) return -1;
            byte marker = buffer[i + 1];
            if (marker == 0xFF) { i++; continue; } // fill bytes before a marker
            if (marker == 0xD9) return i + 2;
            if (marker is >= 0xD0 and <= 0xD7 or 0x01) { i += 2; continue; } // parameterless markers
            if (i + 3 >= buffer.Length) return -1;
            int segment = (buffer[i + 2] << 8) | buffer[i + 3];
            if (segment < 2) return -1;
            i += 2 + segment;
            if (marker != 0xDA) continue;
            // SOS: skip the entropy-coded data up to the next real marker.
            while (i + 1 < buffer.Length)
            {
                if (buffer[i] == 0xFF && buffer[i + 1] != 0x00 && buffer[i + 1] is not (>= 0xD0 and <= 0xD7)) break;
                i++;
            }
        }
        return -1;
    }
}
