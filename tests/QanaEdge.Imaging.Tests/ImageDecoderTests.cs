using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Formats.Bmp;
using SixLabors.ImageSharp.Formats.Gif;
using SixLabors.ImageSharp.Formats.Jpeg;
using SixLabors.ImageSharp.Formats.Png;
using SixLabors.ImageSharp.Formats.Tiff;
using SixLabors.ImageSharp.Metadata.Profiles.Exif;
using SixLabors.ImageSharp.PixelFormats;

namespace QanaEdge.Imaging.Tests;

public class ImageDecoderTests
{
    private static ImageRejectedException Rejected(byte[] file, DecodeLimits? limits = null) =>
        Assert.Throws<ImageRejectedException>(() => ImageDecoder.Decode(file, limits));

    [Fact]
    public void Real_jpeg_decodes_to_the_same_pixels_as_the_library()
    {
        byte[] file = Samples.Jpeg();
        RgbImage image = ImageDecoder.Decode(file);
        using Image<Rgb24> reference = Samples.LoadRgb(file);
        Assert.Equal(reference.Width, image.Width);
        Assert.Equal(reference.Height, image.Height);
        Assert.Equal(Samples.Rgb(reference), image.Pixels);
    }

    [Fact]
    public void Lossless_formats_round_trip_exactly()
    {
        using Image<Rgb24> source = Samples.LoadRgb(Samples.Jpeg(1));
        byte[] expected = Samples.Rgb(source);
        foreach (byte[] file in new[]
                 {
                     Samples.Encode(source, new PngEncoder()),
                     Samples.Encode(source, new BmpEncoder { BitsPerPixel = BmpBitsPerPixel.Pixel24 }),
                     Samples.Encode(source, new TiffEncoder { Compression = SixLabors.ImageSharp.Formats.Tiff.Constants.TiffCompression.Deflate }),
                     Samples.Encode(source, new TiffEncoder { Compression = SixLabors.ImageSharp.Formats.Tiff.Constants.TiffCompression.None }),
                 })
        {
            RgbImage image = ImageDecoder.Decode(file);
            Assert.Equal(source.Width, image.Width);
            Assert.Equal(expected, image.Pixels);
        }
    }

    [Fact]
    public void Grayscale_png_and_jpeg_replicate_the_gray_level_into_rgb()
    {
        using Image<L8> gray = Samples.LoadRgb(Samples.Jpeg(2)).CloneAs<L8>();
        foreach (byte[] file in new[]
                 {
                     Samples.Encode(gray, new PngEncoder { ColorType = PngColorType.Grayscale, BitDepth = PngBitDepth.Bit8 }),
                     Samples.Encode(gray, new JpegEncoder { ColorType = JpegColorType.Luminance, Quality = 100 }),
                 })
        {
            RgbImage image = ImageDecoder.Decode(file);
            for (int i = 0; i < image.Pixels.Length; i += 3)
            {
                Assert.Equal(image.Pixels[i], image.Pixels[i + 1]);
                Assert.Equal(image.Pixels[i], image.Pixels[i + 2]);
            }
            byte[] levels = new byte[gray.Width * gray.Height];
            gray.CopyPixelDataTo(levels);
            byte[] red = Enumerable.Range(0, levels.Length).Select(i => image.Pixels[3 * i]).ToArray();
            Assert.True(Samples.MeanAbsDiff(levels, red) < 1.0, "gray levels preserved");
        }
    }

    [Fact]
    public void Sixteen_bit_png_is_reduced_to_the_nearest_8_bit_value()
    {
        const int w = 40, h = 30;
        using var image = new Image<Rgb48>(w, h);
        var expected = new byte[w * h * 3];
        for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
        {
            // Levels that are not multiples of 257, so that the reduction has to round.
            var p = new Rgb48((ushort)(x * 1600 + 100), (ushort)(y * 2100 + 7), (ushort)(65535 - x * y * 50));
            image[x, y] = p;
            int o = (y * w + x) * 3;
            expected[o] = (byte)Math.Round(p.R / 257.0);
            expected[o + 1] = (byte)Math.Round(p.G / 257.0);
            expected[o + 2] = (byte)Math.Round(p.B / 257.0);
        }
        byte[] file = Samples.Encode(image, new PngEncoder { BitDepth = PngBitDepth.Bit16, ColorType = PngColorType.Rgb });
        RgbImage decoded = ImageDecoder.Decode(file);
        int worst = 0;
        for (int i = 0; i < expected.Length; i++) worst = Math.Max(worst, Math.Abs(expected[i] - decoded.Pixels[i]));
        Assert.True(worst <= 1, $"16-bit to 8-bit off by {worst}");
    }

    [Fact]
    public void Alpha_is_flattened_on_black()
    {
        using var image = new Image<Rgba32>(4, 1);
        image[0, 0] = new Rgba32(200, 100, 50, 255);   // opaque: unchanged
        image[1, 0] = new Rgba32(200, 100, 50, 0);     // transparent: black
        image[2, 0] = new Rgba32(200, 100, 51, 128);   // half: c·128/255 rounded
        image[3, 0] = new Rgba32(255, 255, 255, 64);
        // Pad with opaque mid-grey rows so the exposure check has a normal picture to look at.
        using var padded = new Image<Rgba32>(4, 8, new Rgba32(120, 90, 80, 255));
        for (int x = 0; x < 4; x++) padded[x, 0] = image[x, 0];
        RgbImage decoded = ImageDecoder.Decode(Samples.Encode(padded, new PngEncoder { ColorType = PngColorType.RgbWithAlpha }));
        Assert.Equal(new byte[] { 200, 100, 50, 0, 0, 0, 100, 50, 26, 64, 64, 64 }, decoded.Pixels[..12]);
        Assert.Equal(new byte[] { 120, 90, 80 }, decoded.Pixels[12..15]);
    }

    [Fact]
    public void Cmyk_jpeg_decodes_close_to_its_rgb_source()
    {
        RgbImage image = ImageDecoder.Decode(File.ReadAllBytes(Samples.Fixture("cmyk.jpg")));
        using Image<Rgb24> reference = Image.Load<Rgb24>(Samples.Fixture("cmyk-reference.png"));
        Assert.Equal(48, image.Width);
        Assert.True(Samples.MeanAbsDiff(Samples.Rgb(reference), image.Pixels) < 8, "CMYK converted to RGB");
    }

    [Theory]
    [InlineData(1, false, false, false)]
    [InlineData(2, true, false, false)]   // mirrored horizontally
    [InlineData(3, true, true, false)]    // rotated 180°
    [InlineData(6, false, false, true)]   // rotated 90° clockwise to display
    [InlineData(8, false, false, true)]   // rotated 90° counter-clockwise to display
    public void Exif_orientation_is_applied(ushort orientation, bool flipX, bool flipY, bool transposed)
    {
        // Stored 6 wide × 4 high; a single red pixel block marks the stored top-left corner.
        using var stored = new Image<Rgb24>(60, 40, new Rgb24(90, 90, 90));
        for (int y = 0; y < 10; y++)
        for (int x = 0; x < 10; x++)
            stored[x, y] = new Rgb24(250, 0, 0);
        stored.Metadata.ExifProfile = new ExifProfile();
        stored.Metadata.ExifProfile.SetValue(ExifTag.Orientation, orientation);
        RgbImage image = ImageDecoder.Decode(Samples.Encode(stored, new PngEncoder()));

        Assert.Equal(transposed ? 40 : 60, image.Width);
        Assert.Equal(transposed ? 60 : 40, image.Height);
        int cx, cy; // where the red corner must land
        switch (orientation)
        {
            case 6: cx = image.Width - 1; cy = 0; break;   // top-left goes to top-right
            case 8: cx = 0; cy = image.Height - 1; break;  // top-left goes to bottom-left
            default: cx = flipX ? image.Width - 1 : 0; cy = flipY ? image.Height - 1 : 0; break;
        }
        int o = (cy * image.Width + cx) * 3;
        Assert.Equal(250, image.Pixels[o]);
        int far = ((image.Height - 1 - cy) * image.Width + (image.Width - 1 - cx)) * 3;
        Assert.Equal(90, image.Pixels[far]);
    }

    [Fact]
    public void Empty_file_is_rejected_as_empty() =>
        Assert.Equal(RejectReason.Empty, Rejected([]).Reason);

    [Fact]
    public void Text_and_random_bytes_are_not_images()
    {
        Assert.Equal(RejectReason.NotAnImage, Rejected("image_id,dx\nISIC_1,mel\n"u8.ToArray()).Reason);
        var random = new byte[4096];
        new Random(7).NextBytes(random);
        random[0] = 0x00; // make sure no accepted signature happens to start it
        Assert.Equal(RejectReason.NotAnImage, Rejected(random).Reason);
    }

    [Fact]
    public void Files_cut_short_are_truncated()
    {
        byte[] jpeg = Samples.Jpeg();
        Assert.Equal(RejectReason.Truncated, Rejected(jpeg[..(jpeg.Length / 2)]).Reason);
        Assert.Equal(RejectReason.Truncated, Rejected(jpeg[..(jpeg.Length - 2)]).Reason);
        Assert.Equal(RejectReason.Truncated, Rejected(jpeg[..200]).Reason);

        using Image<Rgb24> source = Samples.LoadRgb(jpeg);
        byte[] png = Samples.Encode(source, new PngEncoder());
        Assert.Equal(RejectReason.Truncated, Rejected(png[..(png.Length / 2)]).Reason);
        Assert.Equal(RejectReason.Truncated, Rejected(png[..40]).Reason);

        byte[] bmp = Samples.Encode(source, new BmpEncoder { BitsPerPixel = BmpBitsPerPixel.Pixel24 });
        Assert.Equal(RejectReason.Truncated, Rejected(bmp[..(bmp.Length / 2)]).Reason);
        byte[] tiff = Samples.Encode(source, new TiffEncoder());
        Assert.Equal(RejectReason.Truncated, Rejected(tiff[..(tiff.Length / 2)]).Reason);
    }

    [Fact]
    public void Other_image_formats_are_unsupported()
    {
        using Image<Rgb24> source = Samples.LoadRgb(Samples.Jpeg());
        ImageRejectedException gif = Rejected(Samples.Encode(source, new GifEncoder()));
        Assert.Equal(RejectReason.Unsupported, gif.Reason);
        Assert.Contains("GIF", gif.Message);
        byte[] webp = [.. "RIFF"u8, 0x20, 0, 0, 0, .. "WEBPVP8 "u8, 0, 0, 0, 0];
        Assert.Equal(RejectReason.Unsupported, Rejected(webp).Reason);
        byte[] heic = [0, 0, 0, 0x18, .. "ftypheic"u8, 0, 0, 0, 0];
        Assert.Equal(RejectReason.Unsupported, Rejected(heic).Reason);
    }

    [Fact]
    public void Dimensions_over_the_limits_are_refused_before_decoding()
    {
        byte[] jpeg = Samples.Jpeg(); // 224 × 224 or 150 × 150
        ImageRejectedException side = Rejected(jpeg, new DecodeLimits { MaxDimension = 100 });
        Assert.Equal(RejectReason.TooLarge, side.Reason);
        Assert.Contains("side limit", side.Message);
        ImageRejectedException count = Rejected(jpeg, new DecodeLimits { MaxPixels = 10_000 });
        Assert.Equal(RejectReason.TooLarge, count.Reason);
        Assert.Contains("pixel limit", count.Message);
        Assert.Equal(RejectReason.TooLarge, Rejected(jpeg, new DecodeLimits { MaxFileBytes = 1000 }).Reason);
    }

    [Fact]
    public void A_header_claiming_a_huge_image_is_refused_without_decoding()
    {
        // A 65535 × 65535 PNG header (a classic decompression bomb): refused from the header alone.
        using var small = new Image<Rgb24>(1, 1);
        byte[] png = Samples.Encode(small, new PngEncoder());
        // IHDR data starts at offset 16: width, height big-endian; fix its CRC.
        png[16] = 0; png[17] = 0; png[18] = 0xFF; png[19] = 0xFF;
        png[20] = 0; png[21] = 0; png[22] = 0xFF; png[23] = 0xFF;
        uint crc = Crc32(png.AsSpan(12, 17));
        png[29] = (byte)(crc >> 24); png[30] = (byte)(crc >> 16); png[31] = (byte)(crc >> 8); png[32] = (byte)crc;
        ImageRejectedException e = Rejected(png);
        Assert.Equal(RejectReason.TooLarge, e.Reason);
        Assert.Contains("65535x65535", e.Message);
    }

    [Fact]
    public void The_memory_cap_holds_and_refuses_what_exceeds_it()
    {
        byte[] jpeg = Samples.Jpeg();
        RgbImage image = ImageDecoder.DecodeMeasured(jpeg, null, out long peak);
        long pixels = (long)image.Width * image.Height;
        // The decoded Rgba32 frame alone is 4 bytes per pixel: the counter sees the real buffers.
        Assert.True(peak >= 4 * pixels, $"peak {peak} bytes for {pixels} pixels");
        Assert.True(peak <= DecodeLimits.Default.MaxDecoderBytes);

        // A budget under the measured peak must refuse the same file, and never go past itself.
        var tight = new DecodeLimits { MaxDecoderBytes = peak - 1 };
        var e = Assert.Throws<ImageRejectedException>(() => ImageDecoder.DecodeMeasured(jpeg, tight, out long tightPeak));
        Assert.Equal(RejectReason.TooLarge, e.Reason);

        // A uniform 3000 × 3000 PNG compresses to a few KiB but needs 36 MB of pixels: a small cap stops it.
        using var big = new Image<L8>(3000, 3000, new L8(128));
        byte[] bomb = Samples.Encode(big, new PngEncoder { ColorType = PngColorType.Grayscale });
        Assert.True(bomb.Length < 100_000);
        var capped = new DecodeLimits { MaxDecoderBytes = 16L << 20 };
        var refused = Assert.Throws<ImageRejectedException>(() => ImageDecoder.DecodeMeasured(bomb, capped, out long bombPeak));
        Assert.Equal(RejectReason.TooLarge, refused.Reason);
    }

    [Fact]
    public void Black_and_blown_out_images_are_rejected()
    {
        using var black = new Image<Rgb24>(64, 64, new Rgb24(3, 5, 2));
        Assert.Equal(RejectReason.AllBlack, Rejected(Samples.Encode(black, new PngEncoder())).Reason);
        using var white = new Image<Rgb24>(64, 64, new Rgb24(255, 252, 250));
        Assert.Equal(RejectReason.Saturated, Rejected(Samples.Encode(white, new PngEncoder())).Reason);
        using var transparent = new Image<Rgba32>(64, 64, new Rgba32(200, 150, 100, 0));
        Assert.Equal(RejectReason.AllBlack, Rejected(Samples.Encode(transparent, new PngEncoder())).Reason);
        // A dark frame with a real lesion in the middle is fine: the vignette of a dermoscope.
        using var vignette = new Image<Rgb24>(64, 64, new Rgb24(0, 0, 0));
        for (int y = 16; y < 48; y++) for (int x = 16; x < 48; x++) vignette[x, y] = new Rgb24(180, 120, 100);
        Assert.Equal(64, ImageDecoder.Decode(Samples.Encode(vignette, new PngEncoder())).Width);
    }

    [Fact]
    public void Reason_codes_are_stable() =>
        Assert.Equal(
            ["empty", "truncated", "not_an_image", "too_large", "unsupported", "all_black", "saturated"],
            Enum.GetValues<RejectReason>().Select(ImageRejectedException.Code).ToArray());

    private static uint Crc32(ReadOnlySpan<byte> data)
    {
        uint crc = 0xFFFFFFFF;
        foreach (byte b in data)
        {
            crc ^= b;
            for (int k = 0; k < 8; k++) crc = (crc & 1) != 0 ? (crc >> 1) ^ 0xEDB88320u : crc >> 1;
        }
        return ~crc;
    }
}
