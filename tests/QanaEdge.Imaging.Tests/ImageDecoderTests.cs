using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Formats.Bmp;
using SixLabors.ImageSharp.Formats.Gif;
using SixLabors.ImageSharp.Formats.Jpeg;
using SixLabors.ImageSharp.Formats.Png;
using SixLabors.ImageSharp.Formats.Tiff;
using SixLabors.ImageSharp.Metadata.Profiles.Exif;
using SixLabors.ImageSharp.PixelFormats;
using SixLabors.ImageSharp.Processing;

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
    public void A_tiff_is_turned_by_its_exif_orientation_too()
    {
        // ImageSharp 2.1 reads a TIFF's orientation tag onto its frame, where AutoOrient does not look (and its TIFF
        // encoder drops the tag, so the file is written here by hand). Stored 60 wide, 40 high, red top-left corner.
        const int width = 60, height = 40;
        var pixels = new byte[width * height * 3];
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
            {
                bool corner = x < 10 && y < 10;
                pixels[(y * width + x) * 3] = (byte)(corner ? 250 : 90);
                pixels[(y * width + x) * 3 + 1] = pixels[(y * width + x) * 3 + 2] = 90;
            }
        RgbImage image = ImageDecoder.Decode(RgbTiff(width, height, orientation: 6, pixels));
        Assert.Equal((height, width), (image.Width, image.Height));
        Assert.Equal(250, image.Pixels[(image.Width - 1) * 3]); // orientation 6: the stored top-left is shown top-right
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(5)]
    [InlineData(6)]
    [InlineData(7)]
    [InlineData(8)]
    public void A_photo_turned_by_its_exif_orientation_needs_no_more_decoder_memory_than_upright(ushort orientation)
    {
        // A phone held upright stores its photo sideways with orientation 6. Turning the decoded frame with the
        // library's AutoOrient built a second 4-byte-per-pixel frame under the budget: a 24 MP photo so stored
        // (what the default limits admit) was refused as too large.
        using var stored = new Image<Rgb24>(1000, 750);
        stored.ProcessPixelRows(rows =>
        {
            for (int y = 0; y < rows.Height; y++)
            {
                Span<Rgb24> row = rows.GetRowSpan(y);
                for (int x = 0; x < row.Length; x++) row[x] = new Rgb24((byte)(x * 7), (byte)(y * 3), (byte)((x + y) * 5));
            }
        });
        byte[] upright = Samples.Encode(stored, new JpegEncoder { Quality = 90 });
        ImageDecoder.DecodeMeasured(upright, null, out long peak);
        stored.Metadata.ExifProfile = new ExifProfile();
        stored.Metadata.ExifProfile.SetValue(ExifTag.Orientation, orientation);
        byte[] turned = Samples.Encode(stored, new JpegEncoder { Quality = 90 });

        RgbImage image = ImageDecoder.DecodeMeasured(turned, new DecodeLimits { MaxDecoderBytes = peak }, out long turnedPeak);
        Assert.True(turnedPeak <= peak, $"orientation {orientation}: peak {turnedPeak} bytes, upright {peak}");
        Assert.Equal(orientation >= 5 ? (750, 1000) : (1000, 750), (image.Width, image.Height));
    }

    [Fact]
    public void Every_exif_orientation_turns_the_image_as_the_library_does()
    {
        // 7 × 5 with every pixel distinct, so that any misplaced pixel shows.
        using var stored = new Image<Rgb24>(7, 5);
        for (int y = 0; y < 5; y++)
            for (int x = 0; x < 7; x++)
                stored[x, y] = new Rgb24((byte)(30 + 20 * x), (byte)(30 + 40 * y), 200);
        for (ushort orientation = 1; orientation <= 8; orientation++)
        {
            stored.Metadata.ExifProfile = new ExifProfile();
            stored.Metadata.ExifProfile.SetValue(ExifTag.Orientation, orientation);
            byte[] png = Samples.Encode(stored, new PngEncoder());
            using Image<Rgb24> expected = Image.Load<Rgb24>(png);
            expected.Mutate(ctx => ctx.AutoOrient());
            RgbImage image = ImageDecoder.Decode(png);
            Assert.Equal((expected.Width, expected.Height), (image.Width, image.Height));
            Assert.True(Samples.Rgb(expected).AsSpan().SequenceEqual(image.Pixels), $"orientation {orientation}");
        }
    }

    /// <summary>Pixel bytes of a pattern no two neighbours share, neither black nor blown out.</summary>
    private static byte[] Patterned(int length)
    {
        var pixels = new byte[length];
        for (int i = 0; i < pixels.Length; i++) pixels[i] = (byte)(30 + i * 7 % 200);
        return pixels;
    }

    /// <summary>An uncompressed, little-endian RGB TIFF with an Orientation tag: header, one IFD, bits per sample, pixels.</summary>
    private static byte[] RgbTiff(int width, int height, ushort orientation, byte[] pixels)
    {
        const int entries = 11, bitsAt = 8 + 2 + entries * 12 + 4, dataAt = bitsAt + 6;
        var file = new byte[dataAt + pixels.Length];
        WriteDirectory(file, bitsAt,
        [
            (256, 3, 1, (uint)width), (257, 3, 1, (uint)height), (258, 3, 3, bitsAt), (259, 3, 1, 1), (262, 3, 1, 2), (273, 4, 1, dataAt),
            (274, 3, 1, orientation), (277, 3, 1, 3), (278, 3, 1, (uint)height), (279, 4, 1, (uint)pixels.Length), (284, 3, 1, 1),
        ]);
        pixels.CopyTo(file, dataAt);
        return file;
    }

    /// <summary>
    /// Writes a little-endian TIFF header and its one directory at offset 8 into <paramref name="file"/>: each entry's
    /// value inline when it is a single SHORT (or LONG), else the offset given; 8-bit samples ×3 at <paramref name="bitsAt"/>.
    /// </summary>
    private static void WriteDirectory(byte[] file, int bitsAt, (ushort Tag, ushort Type, uint Count, uint Value)[] entries)
    {
        const int ifd = 8;
        "II"u8.CopyTo(file);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(file.AsSpan(2), 42);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(4), ifd);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(file.AsSpan(ifd), (ushort)entries.Length);
        for (int i = 0; i < entries.Length; i++)
        {
            var (tag, type, count, value) = entries[i];
            Span<byte> e = file.AsSpan(ifd + 2 + i * 12, 12);
            System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(e, tag);
            System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(e[2..], type);
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(e[4..], count);
            if (type == 3 && count == 1) System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(e[8..], (ushort)value);
            else System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(e[8..], value);
        }
        for (int k = 0; k < 3; k++) System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(file.AsSpan(bitsAt + 2 * k), 8);
    }

    /// <summary>
    /// Comments and application segments that make no pixel (ICC profile, XMP, a second EXIF) are not handed to the
    /// decoder. ImageSharp 2.1 joins the ICC, EXIF and XMP segments it finds by copying what it has each time: a 65 MB
    /// file of a thousand 65 kB segments took 8–9 s and 1.3 GB. The first EXIF stays, and with it the orientation.
    /// </summary>
    [Fact]
    public void Jpeg_metadata_segments_that_make_no_pixel_are_not_read_and_the_orientation_still_is()
    {
        using Image<Rgb24> photo = Samples.LoadRgb(Samples.Jpeg(3));
        photo.Metadata.ExifProfile = new ExifProfile();
        photo.Metadata.ExifProfile.SetValue(ExifTag.Orientation, (ushort)6);
        byte[] jpeg = Samples.Encode(photo, new JpegEncoder { Quality = 90 });
        RgbImage plain = ImageDecoder.Decode(jpeg);
        Assert.Equal((photo.Height, photo.Width), (plain.Width, plain.Height));   // turned

        static byte[] Segment(byte marker, ReadOnlySpan<byte> header, int fill)
        {
            var s = new byte[4 + header.Length + fill];
            s[0] = 0xFF;
            s[1] = marker;
            System.Buffers.Binary.BinaryPrimitives.WriteUInt16BigEndian(s.AsSpan(2), (ushort)(2 + header.Length + fill));
            header.CopyTo(s.AsSpan(4));
            s.AsSpan(4 + header.Length).Fill((byte)'a');
            return s;
        }
        var padded = new List<byte>(jpeg[..2]);
        for (int i = 0; i < 150; i++) padded.AddRange(Segment(0xE2, [.. "ICC_PROFILE\0"u8, (byte)(i + 1), 150], 60_000));
        for (int i = 0; i < 20; i++) padded.AddRange(Segment(0xE1, "http://ns.adobe.com/xap/1.0/\0"u8, 60_000));
        for (int i = 0; i < 20; i++) padded.AddRange(Segment(0xFE, [], 60_000));
        padded.AddRange(jpeg[2..]);
        byte[] file = [.. padded];

        long before = GC.GetAllocatedBytesForCurrentThread();
        RgbImage image = ImageDecoder.Decode(file);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal((plain.Width, plain.Height), (image.Width, image.Height));
        Assert.Equal(plain.Pixels, image.Pixels);
        Assert.True(allocated < 2L * file.Length + (4 << 20), $"{allocated} bytes allocated decoding {file.Length} bytes");
    }

    /// <summary>
    /// An EXIF block whose values overlap (ImageSharp's EXIF reader only checks that each lies inside the block): 1,000
    /// text entries sharing one 16 kB value, reached through the EXIF, GPS and next-directory links of the first
    /// directory, which also holds the orientation. The library made a string per entry per visit, about 100 MB here
    /// (a 78 kB JPEG so made took 588 MB, and a thousand links ran until memory ran out). The orientation is now read
    /// from the block by our own code and the block is never handed to the library.
    /// </summary>
    [Fact]
    public void Overlapping_exif_values_cost_no_memory_and_the_orientation_is_still_read()
    {
        using var stored = new Image<Rgb24>(60, 40, new Rgb24(90, 90, 90));
        for (int y = 0; y < 10; y++)
            for (int x = 0; x < 10; x++)
                stored[x, y] = new Rgb24(250, 0, 0);
        byte[] exif = OverlappingExif(orientation: 6, entries: 1000, valueBytes: 16 << 10);
        byte[] jpeg = Samples.Encode(stored, new JpegEncoder { Quality = 95 });
        byte[] png = Samples.Encode(stored, new PngEncoder());
        byte[] app1 = [0xFF, 0xE1, (byte)((exif.Length + 8) >> 8), (byte)(exif.Length + 8), .. "Exif\0\0"u8, .. exif];
        foreach (byte[] file in new[] { [.. jpeg[..2], .. app1, .. jpeg[2..]], WithChunk(png, "eXIf", exif) })
        {
            RgbImage image = null!;
            long allocated = QanaEdge.TestSupport.Allocations.OnThisThread(() => image = ImageDecoder.Decode(file));
            Assert.Equal((40, 60), (image.Width, image.Height));
            Assert.True(image.Pixels[(image.Width - 1) * 3] > 200, "orientation 6: the stored top-left is shown top-right");
            Assert.True(allocated < 8 << 20, $"{allocated} bytes allocated decoding a {file.Length}-byte file");
        }
    }

    /// <summary>
    /// A little-endian EXIF block (TIFF layout): the first directory holds the orientation and EXIF, GPS and
    /// next-directory links all to a second directory of <paramref name="entries"/> ASCII entries sharing one value.
    /// </summary>
    private static byte[] OverlappingExif(ushort orientation, int entries, int valueBytes)
    {
        const int ifd0 = 8, ifd0Entries = 3, ifdB = ifd0 + 2 + 12 * ifd0Entries + 4;
        int valueAt = ifdB + 2 + 12 * entries + 4;
        var block = new byte[valueAt + valueBytes];
        "II"u8.CopyTo(block);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(block.AsSpan(2), 42);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(block.AsSpan(4), ifd0);
        void Entry(int at, ushort tag, ushort type, uint count, uint value)
        {
            System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(block.AsSpan(at), tag);
            System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(block.AsSpan(at + 2), type);
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(block.AsSpan(at + 4), count);
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(block.AsSpan(at + 8), value);
        }
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(block.AsSpan(ifd0), ifd0Entries);
        Entry(ifd0 + 2, 274, 3, 1, orientation);
        Entry(ifd0 + 14, 34665, 4, 1, ifdB);   // EXIF directory
        Entry(ifd0 + 26, 34853, 4, 1, ifdB);   // GPS directory
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(block.AsSpan(ifd0 + 2 + 12 * ifd0Entries), ifdB);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(block.AsSpan(ifdB), (ushort)entries);
        for (int i = 0; i < entries; i++) Entry(ifdB + 2 + 12 * i, 270, 2, (uint)valueBytes, (uint)valueAt);
        block.AsSpan(valueAt).Fill((byte)'a');
        return block;
    }

    [Fact]
    public void A_progressive_jpeg_decodes_like_its_baseline_original()
    {
        // Fixtures/progressive.jpg: `jpegtran -progressive` of the first sample, the same coefficients in ten scans.
        RgbImage progressive = ImageDecoder.Decode(File.ReadAllBytes(Samples.Fixture("progressive.jpg")));
        RgbImage baseline = ImageDecoder.Decode(Samples.Jpeg());
        Assert.Equal(baseline.Pixels, progressive.Pixels);
    }

    [Fact]
    public void A_jpeg_with_more_scans_than_the_limit_is_refused_before_decoding()
    {
        // The progressive fixture with its last (refinement) scan repeated: a scan bomb in miniature.
        byte[] file = File.ReadAllBytes(Samples.Fixture("progressive.jpg"));
        int lastScan = file.AsSpan().LastIndexOf([(byte)0xFF, (byte)0xDA]), end = file.Length - 2;
        byte[] scan = file[lastScan..end];
        byte[] Repeated(int extra) => [.. file[..end], .. Enumerable.Range(0, extra).SelectMany(_ => scan), 0xFF, 0xD9];

        // At the limit it decodes (each repeated refinement scan refines the same bits again, so the pixels move a little).
        RgbImage atLimit = ImageDecoder.Decode(Repeated(ImageDecoder.MaxJpegScans - 10));
        RgbImage original = ImageDecoder.Decode(file);
        Assert.Equal((original.Width, original.Height), (atLimit.Width, atLimit.Height));
        ImageRejectedException refused = Rejected(Repeated(ImageDecoder.MaxJpegScans - 9));
        Assert.Equal(RejectReason.TooLarge, refused.Reason);
        Assert.Contains("scans", refused.Message);
    }

    [Fact]
    public void Data_after_the_end_of_image_is_ignored()
    {
        // Phones append a video or vendor data after the JPEG (motion photos); some of it may look like markers.
        byte[] jpeg = Samples.Jpeg();
        var trailer = new byte[4096];
        new Random(3).NextBytes(trailer);
        trailer[0] = 0xFF; trailer[1] = 0xD8; trailer[100] = 0xFF; trailer[101] = 0xDA;
        Assert.Equal(ImageDecoder.Decode(jpeg).Pixels, ImageDecoder.Decode([.. jpeg, .. trailer]).Pixels);

        using Image<Rgb24> source = Samples.LoadRgb(jpeg);
        byte[] png = Samples.Encode(source, new PngEncoder());
        Assert.Equal(ImageDecoder.Decode(png).Pixels, ImageDecoder.Decode([.. png, .. trailer]).Pixels);
    }

    [Fact]
    public void A_compressed_png_text_chunk_is_not_inflated()
    {
        // 256 MB of zeros deflated to a quarter of a megabyte in a zTXt chunk: ImageSharp inflated it in full.
        using Image<Rgb24> source = Samples.LoadRgb(Samples.Jpeg(2));
        byte[] png = Samples.Encode(source, new PngEncoder());
        byte[] bomb = WithChunk(png, "zTXt", [.. "Comment"u8, 0, 0, .. Deflated(256 << 20)]);
        long before = GC.GetAllocatedBytesForCurrentThread();
        RgbImage image = ImageDecoder.Decode(bomb);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(ImageDecoder.Decode(png).Pixels, image.Pixels);
        Assert.True(allocated < 64 << 20, $"{allocated} bytes allocated decoding a {bomb.Length}-byte PNG");
    }

    private static byte[] Deflated(int zeros)
    {
        using var packed = new MemoryStream();
        using (var z = new System.IO.Compression.ZLibStream(packed, System.IO.Compression.CompressionLevel.SmallestSize, leaveOpen: true))
        {
            var block = new byte[1 << 20];
            for (int i = 0; i < zeros / block.Length; i++) z.Write(block);
        }
        return packed.ToArray();
    }

    /// <summary>The PNG with one more chunk (correct CRC) right after IHDR.</summary>
    private static byte[] WithChunk(byte[] png, string type, byte[] data)
    {
        int afterHeader = 8 + 12 + 13;
        byte[] typed = [.. System.Text.Encoding.ASCII.GetBytes(type), .. data];
        var chunk = new byte[12 + data.Length];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(chunk, (uint)data.Length);
        typed.CopyTo(chunk, 4);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(chunk.AsSpan(8 + data.Length), Crc32(typed));
        return [.. png[..afterHeader], .. chunk, .. png[afterHeader..]];
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

    /// <summary>
    /// A BMP with the OS/2 1.x core header (12 bytes, 16-bit sizes) decodes like the Windows one, and cut short it is
    /// truncated too: ImageSharp 2.1 decoded it without an error, the missing rows filled with bytes that were never in
    /// the file, since only the Windows headers' rows were checked.
    /// </summary>
    [Fact]
    public void An_os2_bmp_is_truncated_when_cut_short()
    {
        using Image<Rgb24> source = Samples.LoadRgb(Samples.Jpeg(3));
        byte[] windows = Samples.Encode(source, new BmpEncoder { BitsPerPixel = BmpBitsPerPixel.Pixel24 });
        byte[] rows = windows[System.Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(windows.AsSpan(10))..];
        const int offset = 14 + 12;
        var os2 = new byte[offset + rows.Length];
        "BM"u8.CopyTo(os2);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(os2.AsSpan(2), os2.Length);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(os2.AsSpan(10), offset);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(os2.AsSpan(14), 12);     // BITMAPCOREHEADER
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(os2.AsSpan(18), (ushort)source.Width);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(os2.AsSpan(20), (ushort)source.Height);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(os2.AsSpan(22), 1);      // planes
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(os2.AsSpan(24), 24);     // bits per pixel
        rows.CopyTo(os2, offset);
        Assert.Equal(ImageDecoder.Decode(windows).Pixels, ImageDecoder.Decode(os2).Pixels);
        foreach (int length in new[] { os2.Length - 1, os2.Length * 3 / 4, os2.Length / 2, offset + 10 })
            Assert.Equal(RejectReason.Truncated, Rejected(os2[..length]).Reason);
    }

    /// <summary>
    /// The OS/2 2.x headers too: the short one (16 bytes, the first 16 of the Windows header) and the full one (64
    /// bytes). Cut short, a short-header BMP was decoded by ImageSharp 2.1 without an error, the last row read repeated
    /// for the missing ones, since only the Windows headers' and the 1.x core header's rows were checked.
    /// </summary>
    [Theory]
    [InlineData(16)]
    [InlineData(64)]
    public void An_os2_2x_bmp_is_truncated_when_cut_short(int headerSize)
    {
        using Image<Rgb24> source = Samples.LoadRgb(Samples.Jpeg(3));
        byte[] windows = Samples.Encode(source, new BmpEncoder { BitsPerPixel = BmpBitsPerPixel.Pixel24 });
        byte[] rows = windows[System.Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(windows.AsSpan(10))..];
        int offset = 14 + headerSize;
        var os2 = new byte[offset + rows.Length];
        "BM"u8.CopyTo(os2);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(os2.AsSpan(2), os2.Length);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(os2.AsSpan(10), offset);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(os2.AsSpan(14), headerSize);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(os2.AsSpan(18), source.Width);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(os2.AsSpan(22), source.Height);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(os2.AsSpan(26), 1);      // planes
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(os2.AsSpan(28), 24);     // bits per pixel; the rest 0: uncompressed
        rows.CopyTo(os2, offset);
        Assert.Equal(ImageDecoder.Decode(windows).Pixels, ImageDecoder.Decode(os2).Pixels);
        foreach (int length in new[] { os2.Length - 1, os2.Length * 3 / 5, os2.Length / 2, offset + 10 })
            Assert.Equal(RejectReason.Truncated, Rejected(os2[..length]).Reason);
    }

    [Fact]
    public void A_tiff_whose_directory_comes_first_is_truncated_when_cut_short()
    {
        // Writers that put the directory before the pixels leave it whole in a file cut short; the library then
        // decoded the missing strips as black instead of refusing the file.
        byte[] pixels = Patterned(60 * 40 * 3);
        byte[] tiff = RgbTiff(60, 40, orientation: 1, pixels);
        Assert.Equal(60, ImageDecoder.Decode(tiff).Width);
        foreach (int length in new[] { tiff.Length - 1, tiff.Length * 9 / 10, tiff.Length / 2, 300 })
            Assert.Equal(RejectReason.Truncated, Rejected(tiff[..length]).Reason);
        // A strip offset past the end, or a strip list that does not fit in the file, is the same damage.
        byte[] lying = (byte[])tiff.Clone();
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(lying.AsSpan(8 + 2 + 9 * 12 + 8), (uint)pixels.Length + 1);
        Assert.Equal(RejectReason.Truncated, Rejected(lying).Reason);
        byte[] list = (byte[])tiff.Clone();
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(list.AsSpan(8 + 2 + 5 * 12 + 4), 0x3FFFFFFF);
        Assert.Equal(RejectReason.Truncated, Rejected(list).Reason);
    }

    /// <summary>
    /// A TIFF's strip list may hold no more entries than its image has strips. ImageSharp 2.1 parses the list whole when
    /// it identifies the header, about 70 bytes an entry outside the decoder's budget: 9 million strips listed for a
    /// 64 × 64 image in a 72 MB file took 776 MB. Now refused before the library sees the file; the same image cut into
    /// one strip per row, listed as it should be, decodes to the same pixels.
    /// </summary>
    [Fact]
    public void A_tiff_listing_more_strips_than_its_image_has_is_refused_before_the_library_parses_the_list()
    {
        byte[] pixels = Patterned(60 * 40 * 3);
        byte[] tiff = RgbTiff(60, 40, orientation: 1, pixels);
        RgbImage whole = ImageDecoder.Decode(tiff);

        Assert.Equal(whole.Pixels, ImageDecoder.Decode(WithStrips(tiff, 40, 60 * 3)).Pixels);
        byte[] listed = WithStrips(tiff, 2_000_000, 60 * 3);
        long before = GC.GetAllocatedBytesForCurrentThread();
        ImageRejectedException e = Rejected(listed);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(RejectReason.Truncated, e.Reason);
        Assert.Equal("TIFF lists 2000000 strips; a 60x40 image with RowsPerStrip 1 has 40", e.Message);
        Assert.True(allocated < 2L * listed.Length, $"{allocated} bytes allocated refusing {listed.Length} bytes");
    }

    /// <summary>
    /// A TIFF entry whose values the pixels are not made from (a description, a private tag) is dropped from the copy
    /// the library decodes when it is large: ImageSharp 2.1 reads every value whole, several times its size in memory
    /// (a 70 MB one in a 64 × 64 image took 395–532 MB). The image decodes to the same pixels, with only the file's
    /// copies allocated.
    /// </summary>
    [Fact]
    public void Large_tiff_entries_the_pixels_do_not_need_are_not_read()
    {
        byte[] pixels = Patterned(60 * 40 * 3);
        byte[] tiff = RgbTiff(60, 40, orientation: 6, pixels);
        RgbImage plain = ImageDecoder.Decode(tiff);
        foreach (var (tag, type) in new (ushort, ushort)[] { (270, 2), (65000, 7) })   // ImageDescription (ASCII), a private tag (UNDEFINED)
        {
            byte[] values = new byte[8 << 20];
            values.AsSpan().Fill((byte)'a');   // text to the end: a NUL would end an ASCII value early
            byte[] large = WithEntry(tiff, tag, type, values);
            long before = GC.GetAllocatedBytesForCurrentThread();
            RgbImage image = ImageDecoder.Decode(large);
            long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            Assert.Equal((plain.Width, plain.Height), (image.Width, image.Height));   // turned by its orientation, as before
            Assert.Equal(plain.Pixels, image.Pixels);
            Assert.True(allocated < 2L * large.Length + (2 << 20), $"tag {tag}: {allocated} bytes allocated decoding {large.Length} bytes");
        }
    }

    /// <summary>
    /// Directory values that stay under the 64 kB drop one by one, or are exempt from it, are bounded in all: values
    /// may overlap, and 20,000 text entries of exactly 64 kB naming one 64 kB run were read to 2.6 GB while the library
    /// identified the header; copies of the colour map had no bound at all. Past 1 MiB in all the file is refused
    /// before the library sees it; a few such entries still decode.
    /// </summary>
    [Fact]
    public void Tiff_directory_values_are_bounded_in_all_however_they_overlap()
    {
        foreach (var (tag, type, count) in new (ushort, ushort, uint)[] { (270, 2, 65536), (320, 3, 3 * 65536) })
        {
            byte[] bomb = TiffWithSharedValues(tag, type, count, copies: 200);
            ImageRejectedException e = null!;
            long allocated = QanaEdge.TestSupport.Allocations.OnThisThread(() => e = Rejected(bomb));
            Assert.Equal(RejectReason.TooLarge, e.Reason);
            Assert.EndsWith("bytes of values besides its strip lists, over the 1048576-byte limit", e.Message);
            Assert.True(allocated < 2L * bomb.Length + (1 << 20), $"tag {tag}: {allocated} bytes allocated refusing {bomb.Length} bytes");
        }
        Assert.Equal(40, ImageDecoder.Decode(TiffWithSharedValues(270, 2, 65536, copies: 10)).Height);
    }

    /// <summary>
    /// A 60 × 40 RGB TIFF (as <see cref="RgbTiff"/>) whose directory also holds <paramref name="copies"/> entries of
    /// <paramref name="tag"/>, each <paramref name="count"/> values of <paramref name="type"/>, all naming one run of
    /// text at the end of the file.
    /// </summary>
    private static byte[] TiffWithSharedValues(ushort tag, ushort type, uint count, int copies)
    {
        const int width = 60, height = 40;
        int entries = 11 + copies, bitsAt = 8 + 2 + entries * 12 + 4, dataAt = bitsAt + 6, valuesAt = dataAt + width * height * 3;
        int valueBytes = (int)count * (type == 3 ? 2 : 1);
        var file = new byte[valuesAt + valueBytes];
        WriteDirectory(file, bitsAt,
        [
            (256, 3, 1, width), (257, 3, 1, height), (258, 3, 3, (uint)bitsAt), (259, 3, 1, 1), (262, 3, 1, 2), (273, 4, 1, (uint)dataAt),
            (274, 3, 1, 1), (277, 3, 1, 3), (278, 3, 1, height), (279, 4, 1, width * height * 3), (284, 3, 1, 1),
            .. Enumerable.Repeat((tag, type, count, (uint)valuesAt), copies),
        ]);
        Patterned(width * height * 3).CopyTo(file, dataAt);
        file.AsSpan(valuesAt).Fill((byte)'a');
        return file;
    }

    /// <summary>
    /// <paramref name="tiff"/> (from <see cref="RgbTiff"/>) with one more entry in its directory, whose values are
    /// <paramref name="values"/>: the directory is written again at the end of the file, in tag order, and the header
    /// points to it.
    /// </summary>
    private static byte[] WithEntry(byte[] tiff, ushort tag, ushort type, byte[] values)
    {
        const int ifd = 8;
        int entries = System.Buffers.Binary.BinaryPrimitives.ReadUInt16LittleEndian(tiff.AsSpan(ifd));
        int valuesAt = tiff.Length, newIfd = valuesAt + values.Length;
        var file = new byte[newIfd + 2 + 12 * (entries + 1) + 4];
        tiff.CopyTo(file, 0);
        values.CopyTo(file, valuesAt);
        var entry = new byte[12];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(entry, tag);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(entry.AsSpan(2), type);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(entry.AsSpan(4), (uint)values.Length);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(entry.AsSpan(8), (uint)valuesAt);
        var all = Enumerable.Range(0, entries).Select(i => tiff.AsSpan(ifd + 2 + 12 * i, 12).ToArray()).Append(entry)
            .OrderBy(e => System.Buffers.Binary.BinaryPrimitives.ReadUInt16LittleEndian(e)).ToArray();
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(file.AsSpan(newIfd), (ushort)all.Length);
        for (int i = 0; i < all.Length; i++) all[i].CopyTo(file, newIfd + 2 + 12 * i);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(4), (uint)newIfd);
        return file;
    }

    /// <summary>
    /// ImageSharp 2.1 decodes no tiled TIFF, but parses the tile lists whole before refusing it, as it does strip lists:
    /// a million-entry list for a 32 × 32 image, or one tile per pixel of a 4096 × 4096 one, went to the library with
    /// only the strips' kind of bound (a tile count from the tile size) between it and the file. A tiled TIFF is refused
    /// at its first tile entry, before the library sees the file, however well formed.
    /// </summary>
    [Fact]
    public void A_tiled_tiff_is_refused_before_the_library_parses_its_tile_lists()
    {
        foreach (byte[] file in new[] { TiledTiff(tiles: 4), TiledTiff(tiles: 1_000_000), TiledTiff(tiles: 1_000_000, side: 4096, tile: 1) })
        {
            ImageRejectedException e = null!;
            long allocated = QanaEdge.TestSupport.Allocations.OnThisThread(() => e = Rejected(file));
            Assert.Equal((RejectReason.Unsupported, "TIFF is tiled; only striped TIFF is decoded"), (e.Reason, e.Message));
            Assert.True(allocated < 1 << 20, $"{allocated} bytes allocated refusing {file.Length} bytes");
        }
    }

    /// <summary>
    /// The bound on a TIFF's strip and tile lists held only for a directory that gave the image's size, the tile size,
    /// a sane number of planes and each list once: tile lists without a tile size, a long strip list followed by a real
    /// one-entry list, 65,535 separate planes, or a missing or zero width let a list of any length through to the library,
    /// which parses it whole at about 70 bytes an entry (a 4-million-entry pair took 231–264 MB, and the duplicated one
    /// was classified); so did a strip list of a type other than SHORT or LONG, which the bound did not count. Each is
    /// now refused before the library sees the file (tile lists as a tiled TIFF), and so is a size over the pixel limit.
    /// </summary>
    [Fact]
    public void A_tiff_directory_that_would_escape_the_list_bound_is_refused()
    {
        const int count = 1_000_000;
        (ushort, ushort, uint, uint)[] Base(TiffLayout at, bool strips = true) =>
        [
            (256, 3, 1, 60), (257, 3, 1, 40), (258, 3, 3, at.Bits), (259, 3, 1, 1), (262, 3, 1, 2), (277, 3, 1, 3), (278, 3, 1, 40), (284, 3, 1, 1),
            .. strips ? new (ushort, ushort, uint, uint)[] { (273, 4, 1, at.Data), (279, 4, 1, 60 * 40 * 3) } : [],
        ];
        (ushort, ushort, uint, uint)[] Lists(TiffLayout at, ushort offsetsTag, ushort countsTag) =>
            [(offsetsTag, 4, count, at.Offsets), (countsTag, 4, count, at.Counts)];
        (ushort, ushort, uint, uint)[] With((ushort, ushort, uint, uint)[] entries, ushort tag, uint value) =>
            entries.Select(e => e.Item1 == tag ? (e.Item1, e.Item2, e.Item3, value) : e).ToArray();

        foreach (var (file, reason, message) in new (byte[], RejectReason, string)[]
                 {
                     (TiffWithLists(count, at => [.. Base(at, strips: false), .. Lists(at, 324, 325)]),
                         RejectReason.Unsupported, "TIFF is tiled; only striped TIFF is decoded"),
                     // A strip list of a type the bound does not count (BYTE here) went to the library uncounted.
                     (TiffWithLists(count, at => [.. Base(at, strips: false), (273, 1, count, at.Offsets), (279, 4, 1, 60 * 40 * 3)]),
                         RejectReason.Unsupported, "TIFF strip list (tag 273) is of type 1; TIFF 6.0 lists strips as SHORT or LONG"),
                     // The pixel limit is checked with the sides, before the library parses the lists.
                     (TiffWithLists(count, at => [.. With(With(Base(at, strips: false), 256, 8192), 257, 8192), .. Lists(at, 273, 279)]),
                         RejectReason.TooLarge, "image has 67108864 pixels, over the 24000000-pixel limit"),
                     (TiffWithLists(count, at => [.. Lists(at, 273, 279), .. Base(at)]),
                         RejectReason.Truncated, "TIFF directory gives tag 273 more than once"),
                     (TiffWithLists(count, at => [.. With(With(With(Base(at, strips: false), 277, 65535), 284, 2), 278, 1), .. Lists(at, 273, 279)]),
                         RejectReason.Unsupported, "TIFF has 65535 samples per pixel in separate planes (at most 4 are decoded)"),
                     (TiffWithLists(count, at => [.. Base(at, strips: false).Where(e => e.Item1 != 256), .. Lists(at, 273, 279)]),
                         RejectReason.Truncated, "TIFF directory gives no image size (width unset, length 40)"),
                     (TiffWithLists(count, at => [.. With(Base(at, strips: false), 256, 0), .. Lists(at, 273, 279)]),
                         RejectReason.Truncated, "TIFF directory gives no image size (width 0, length 40)"),
                 })
        {
            ImageRejectedException e = null!;
            long allocated = QanaEdge.TestSupport.Allocations.OnThisThread(() => e = Rejected(file));
            Assert.Equal((reason, message), (e.Reason, e.Message));
            Assert.True(allocated < 1 << 20, $"{message}: {allocated} bytes allocated refusing {file.Length} bytes");
        }
        // The same directory, well formed, decodes.
        Assert.Equal(60, ImageDecoder.Decode(TiffWithLists(1, at => Base(at))).Width);
    }

    /// <summary>Where <see cref="TiffWithLists"/> puts the bits per sample, the strip, and the two lists.</summary>
    private readonly record struct TiffLayout(uint Bits, uint Data, uint Offsets, uint Counts);

    /// <summary>
    /// A little-endian 60 × 40 uncompressed RGB TIFF: its directory (made by <paramref name="directory"/> from where the
    /// parts lie), bits per sample, the pixels in one strip, then a list of <paramref name="count"/> LONG offsets (each
    /// the strip) and one of as many byte counts (each a row).
    /// </summary>
    private static byte[] TiffWithLists(int count, Func<TiffLayout, (ushort Tag, ushort Type, uint Count, uint Value)[]> directory)
    {
        const int stripBytes = 60 * 40 * 3;
        int entries = directory(default).Length;
        int bitsAt = 8 + 2 + entries * 12 + 4, dataAt = bitsAt + 6, offsetsAt = dataAt + stripBytes, countsAt = offsetsAt + 4 * count;
        var file = new byte[countsAt + 4 * count];
        WriteDirectory(file, bitsAt, directory(new TiffLayout((uint)bitsAt, (uint)dataAt, (uint)offsetsAt, (uint)countsAt)));
        Patterned(stripBytes).CopyTo(file, dataAt);
        for (int i = 0; i < count; i++)
        {
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(offsetsAt + 4 * i), (uint)dataAt);
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(countsAt + 4 * i), 60 * 3);
        }
        return file;
    }

    /// <summary>
    /// A little-endian <paramref name="side"/> × <paramref name="side"/> RGB TIFF of <paramref name="tile"/> ×
    /// <paramref name="tile"/> uncompressed tiles whose tile lists hold <paramref name="tiles"/> entries, each the first tile.
    /// </summary>
    private static byte[] TiledTiff(int tiles, uint side = 32, uint tile = 16)
    {
        const int entries = 11, bitsAt = 8 + 2 + entries * 12 + 4, offsetsAt = bitsAt + 6;
        int tileBytes = (int)(tile * tile * 3), countsAt = offsetsAt + 4 * tiles, dataAt = countsAt + 4 * tiles;
        var file = new byte[dataAt + tileBytes];
        WriteDirectory(file, bitsAt,
        [
            (256, 3, 1, side), (257, 3, 1, side), (258, 3, 3, bitsAt), (259, 3, 1, 1), (262, 3, 1, 2), (277, 3, 1, 3), (284, 3, 1, 1),
            (322, 3, 1, tile), (323, 3, 1, tile), (324, 4, (uint)tiles, offsetsAt), (325, 4, (uint)tiles, (uint)countsAt),
        ]);
        for (int t = 0; t < tiles; t++)
        {
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(offsetsAt + 4 * t), (uint)dataAt);
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(countsAt + 4 * t), (uint)tileBytes);
        }
        Patterned(tileBytes).CopyTo(file, dataAt);
        return file;
    }

    /// <summary>
    /// <paramref name="tiff"/> (from <see cref="RgbTiff"/>) with one row a strip, its strip list holding
    /// <paramref name="count"/> entries: strip i at row i, the entries past the image's rows at its last row.
    /// </summary>
    private static byte[] WithStrips(byte[] tiff, int count, int rowBytes)
    {
        const int ifd = 8, offsetsEntry = ifd + 2 + 5 * 12, rowsPerStripEntry = ifd + 2 + 8 * 12, countsEntry = ifd + 2 + 9 * 12;
        uint dataAt = System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(tiff.AsSpan(offsetsEntry + 8));
        int rows = (tiff.Length - (int)dataAt) / rowBytes, listAt = tiff.Length;
        var file = new byte[listAt + 8 * count];
        tiff.CopyTo(file, 0);
        for (int i = 0; i < count; i++)
        {
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(listAt + 4 * i), dataAt + (uint)(Math.Min(i, rows - 1) * rowBytes));
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(listAt + 4 * count + 4 * i), (uint)rowBytes);
        }
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(file.AsSpan(rowsPerStripEntry + 8), 1);
        foreach (var (entry, at) in new[] { (offsetsEntry, listAt), (countsEntry, listAt + 4 * count) })
        {
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(entry + 4), (uint)count);
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(entry + 8), (uint)at);
        }
        return file;
    }

    /// <summary>
    /// Only a TIFF's first page is classified. ImageSharp 2.1 parsed every directory and decoded every page: 2,000 pages
    /// of one real 150 × 150 photograph (each a copy of the first directory, sharing its strips: a 330 kB file) crossed
    /// the memory budget and were refused as too large, and 6 MB of one-pixel pages took seconds and 490 MB outside
    /// the budget.
    /// </summary>
    [Fact]
    public void A_multi_page_tiff_decodes_its_first_page_alone()
    {
        using Image<Rgb24> source = Samples.LoadRgb(Samples.Jpeg(6));
        byte[] single = Samples.Encode(source, new TiffEncoder());
        using (Image<Rgba32> three = Image.Load<Rgba32>(WithPages(single, 3)))
            Assert.Equal(3, three.Frames.Count);    // a real multi-page TIFF to the library
        byte[] pages = WithPages(single, 2000);
        RgbImage expected = ImageDecoder.Decode(single);
        long before = GC.GetAllocatedBytesForCurrentThread();
        RgbImage image = ImageDecoder.Decode(pages);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal((expected.Width, expected.Height), (image.Width, image.Height));
        Assert.Equal(expected.Pixels, image.Pixels);
        // The file copies and the output, not 200 decoded pages.
        Assert.True(allocated < 4L * pages.Length + 3L * image.Width * image.Height + (4 << 20), $"{allocated} bytes allocated decoding {pages.Length} bytes");
    }

    /// <summary>The TIFF with <paramref name="count"/> pages: its first directory repeated, each copy linked to the next.</summary>
    private static byte[] WithPages(byte[] tiff, int count)
    {
        Assert.Equal((byte)'I', tiff[0]);
        int ifd = (int)System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(tiff.AsSpan(4));
        int size = 2 + 12 * System.Buffers.Binary.BinaryPrimitives.ReadUInt16LittleEndian(tiff.AsSpan(ifd)) + 4;
        int start = (tiff.Length + 1) & ~1;    // directories start on a word boundary
        var file = new byte[start + (count - 1) * size];
        tiff.CopyTo(file, 0);
        for (int page = 1; page < count; page++)
        {
            int at = start + (page - 1) * size;
            tiff.AsSpan(ifd, size).CopyTo(file.AsSpan(at));
            int previousLink = (page == 1 ? ifd : at - size) + size - 4;
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(previousLink), (uint)at);
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(at + size - 4), 0);
        }
        return file;
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
