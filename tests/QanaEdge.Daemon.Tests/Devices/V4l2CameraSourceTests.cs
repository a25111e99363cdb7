using System.Security.Cryptography;
using Iot.Device.Media;
using QanaEdge.Daemon.Tests.Infrastructure;
using QanaEdge.Devices.Camera;

namespace QanaEdge.Daemon.Tests.Devices;

public sealed class V4l2CameraSourceTests
{
    private static EmulatedVideoDevice Device(params VideoPixelFormat[] supported) =>
        new(new VideoConnectionSettings(0, (640, 480), VideoPixelFormat.MJPEG), supported);

    [Fact]
    public void An_MJPEG_frame_comes_back_as_exactly_the_encoded_JPEG_without_the_driver_buffer_padding()
    {
        byte[] jpeg = File.ReadAllBytes(TestEnv.RealImages(1, skip: 610)[0]);
        using var device = Device(VideoPixelFormat.MJPEG, VideoPixelFormat.YUYV);
        device.Scene = jpeg;
        using var camera = new V4l2CameraSource(device);

        byte[] frame = camera.CaptureJpeg();

        Assert.Equal(640 * 480 * 2, device.Capture().Length); // what the binding hands over: the whole buffer
        Assert.Equal(SHA256.HashData(jpeg), SHA256.HashData(frame));
        Assert.Equal(VideoPixelFormat.MJPEG, device.NegotiatedFormat);
        Assert.Equal("v4l2 /dev/video0 640x480", camera.Name);
    }

    /// <summary>
    /// Auto-exposure settles only once frames flow, so the first frames after stream-on come out too dark or too bright.
    /// The source lets the warm-up frames go by, each dequeued and its buffer queued again, and returns the next one.
    /// Five warm-up frames on the binding's four buffers: the sixth dequeue takes buffer 1 again, which it can only
    /// because the warm-up frames' buffers went back to the driver.
    /// </summary>
    [Fact]
    public void Warm_up_frames_after_stream_on_are_dequeued_and_queued_again_and_the_settled_frame_is_returned()
    {
        byte[][] images = TestEnv.RealImages(6, skip: 613).Select(File.ReadAllBytes).ToArray();
        Assert.Equal(6, images.Select(Convert.ToHexString).Distinct().Count());
        using var device = Device(VideoPixelFormat.MJPEG);
        device.SettlingFrames = images[..5];
        device.Scene = images[5];
        using var camera = new V4l2CameraSource(device, warmupFrames: 5);

        byte[] frame = camera.CaptureJpeg();

        Assert.Equal(SHA256.HashData(images[5]), SHA256.HashData(frame));
        Assert.Equal(
            [
                "REQBUFS 4", "QBUF 0", "QBUF 1", "QBUF 2", "QBUF 3", "STREAMON",
                "DQBUF 0", "QBUF 0", "DQBUF 1", "QBUF 1", "DQBUF 2", "QBUF 2", "DQBUF 3", "QBUF 3", "DQBUF 0", "QBUF 0",
                "DQBUF 1", "QBUF 1", "STREAMOFF",
            ],
            device.Ioctls);
        Assert.Equal(1, device.Captures);
    }

    [Fact]
    public void Without_warm_up_the_first_frame_after_stream_on_is_returned()
    {
        byte[][] images = TestEnv.RealImages(2, skip: 613).Select(File.ReadAllBytes).ToArray();
        using var device = Device(VideoPixelFormat.MJPEG);
        device.SettlingFrames = [images[0]];
        device.Scene = images[1];
        using var camera = new V4l2CameraSource(device, warmupFrames: 0);

        Assert.Equal(SHA256.HashData(images[0]), SHA256.HashData(camera.CaptureJpeg()));
        Assert.Equal(["REQBUFS 4", "QBUF 0", "QBUF 1", "QBUF 2", "QBUF 3", "STREAMON", "DQBUF 0", "QBUF 0", "STREAMOFF"], device.Ioctls);
        Assert.Throws<ArgumentOutOfRangeException>(() => new V4l2CameraSource(device, warmupFrames: -1));
    }

    [Fact]
    public void A_camera_without_MJPEG_gives_raw_YUYV_which_is_refused_with_the_reason()
    {
        using var device = Device(VideoPixelFormat.YUYV);
        device.Scene = File.ReadAllBytes(TestEnv.RealImages(1, skip: 611)[0]);
        using var camera = new V4l2CameraSource(device);

        var e = Assert.Throws<CameraException>(camera.CaptureJpeg);
        Assert.Equal(VideoPixelFormat.YUYV, device.NegotiatedFormat);
        Assert.Contains("not a JPEG", e.Message);
        Assert.Contains("MJPEG", e.Message);
    }

    [Fact]
    public void An_unplugged_camera_fails_with_a_camera_exception_naming_the_device()
    {
        using var device = Device(VideoPixelFormat.MJPEG);
        device.Unplugged = true;
        using var camera = new V4l2CameraSource(device);

        var e = Assert.Throws<CameraException>(camera.CaptureJpeg);
        Assert.Contains("/dev/video0", e.Message);
        Assert.IsType<IOException>(e.InnerException);
    }

    [Fact]
    public void A_frame_cut_short_before_its_end_of_image_is_refused()
    {
        byte[] jpeg = File.ReadAllBytes(TestEnv.RealImages(1, skip: 612)[0]);
        using var device = Device(VideoPixelFormat.MJPEG);
        device.Scene = jpeg[..(jpeg.Length / 2)];
        using var camera = new V4l2CameraSource(device);

        var e = Assert.Throws<CameraException>(camera.CaptureJpeg);
        Assert.Contains("cut short", e.Message);
    }

    /// <summary>
    /// A frame cut short in a driver buffer that held a longer frame before: the driver fills only the bytes the frame
    /// uses, the binding hands over the whole buffer, and the end of image found there is the older frame's, so the
    /// JPEG walked to it is the new frame's start joined to the old frame's end, and it decodes. With five warm-up frames
    /// on the binding's four buffers the kept frame is in buffer 1, after warm-up frame 1; with none, it is in buffer 0,
    /// after the previous capture's frame. Both are refused as cut short; the same frame whole is taken.
    /// </summary>
    [Fact]
    public void A_frame_cut_short_in_a_buffer_an_older_longer_frame_filled_is_refused_not_joined_to_that_frames_end()
    {
        byte[][] images = TestEnv.RealImages(6, skip: 613).Select(File.ReadAllBytes).ToArray();
        byte[] cut = images[5][..(images[5].Length / 2)];
        Assert.True(images[1].Length > cut.Length, "warm-up frame 1 must be longer than the frame cut short");
        using var device = Device(VideoPixelFormat.MJPEG);
        device.SettlingFrames = images[..5];
        device.Scene = cut;
        using (var camera = new V4l2CameraSource(device, warmupFrames: 5))
        {
            // What the buffer holds decodes: the cut frame's start and warm-up frame 1's end.
            Assert.Equal(images[1].Length, JpegFrame.Length([.. cut, .. images[1][cut.Length..]]));
            var e = Assert.Throws<CameraException>(camera.CaptureJpeg);
            Assert.Contains("cut short", e.Message);

            device.Scene = images[5];
            Assert.Equal(SHA256.HashData(images[5]), SHA256.HashData(camera.CaptureJpeg()));
        }

        using var again = Device(VideoPixelFormat.MJPEG);
        using var noWarmup = new V4l2CameraSource(again, warmupFrames: 0);
        again.Scene = images[1];
        Assert.Equal(SHA256.HashData(images[1]), SHA256.HashData(noWarmup.CaptureJpeg()));
        again.Scene = cut;
        Assert.Contains("cut short", Assert.Throws<CameraException>(noWarmup.CaptureJpeg).Message);
        // The same frame again, whole, is what it is.
        again.Scene = images[1];
        Assert.Equal(SHA256.HashData(images[1]), SHA256.HashData(noWarmup.CaptureJpeg()));

        // An encoder that pads every frame to one size with fill bytes before the end of image ends them alike: two
        // different frames of that size are both whole.
        byte[] Padded(byte[] jpeg, int size) => [.. jpeg[..^2], .. Enumerable.Repeat((byte)0xFF, size - jpeg.Length), 0xFF, 0xD9];
        int size = Math.Max(images[2].Length, images[4].Length) + 64;
        foreach (byte[] padded in new[] { Padded(images[2], size), Padded(images[4], size) })
        {
            again.Scene = padded;
            Assert.Equal(SHA256.HashData(padded), SHA256.HashData(noWarmup.CaptureJpeg()));
        }
    }
}

public sealed class JpegFrameTests
{
    [Fact]
    public void Real_JPEGs_end_at_their_own_length_whatever_follows()
    {
        foreach (string file in TestEnv.RealImages(20, skip: 620))
        {
            byte[] jpeg = File.ReadAllBytes(file);
            Assert.Equal(jpeg.Length, JpegFrame.Length(jpeg));
            // A reused driver buffer keeps the tail of an older frame, which holds markers of its own.
            byte[] stale = [.. jpeg, .. jpeg];
            Assert.Equal(jpeg.Length, JpegFrame.Length(stale));
            Assert.Equal(-1, JpegFrame.Length(jpeg.AsSpan(0, jpeg.Length - 1)));
        }
    }

    [Fact]
    public void Stuffed_bytes_and_restart_markers_in_scan_data_are_not_the_end()
    {
        // SOI, SOS (length 8 + data), scan data with FF 00 (stuffed), FF D3 (RST3), then EOI, then junk.
        byte[] frame = [0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x08, 1, 1, 0, 0, 0x3F, 0, 0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD3, 0x56, 0xFF, 0xD9, 0xFF, 0xD9, 0x00];
        Assert.Equal(21, JpegFrame.Length(frame));
    }

    [Fact]
    public void Anything_but_a_JPEG_has_no_length()
    {
        Assert.Equal(-1, JpegFrame.Length([]));
        Assert.Equal(-1, JpegFrame.Length([0x80, 0x80, 0x80, 0x80]));
        Assert.Equal(-1, JpegFrame.Length([0xFF, 0xD8, 0x00, 0x00, 0x00]));
    }
}
