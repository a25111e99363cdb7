using System.Buffers.Binary;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Formats.Bmp;
using SixLabors.ImageSharp.Formats.Jpeg;
using SixLabors.ImageSharp.Formats.Png;
using SixLabors.ImageSharp.Formats.Tiff;
using SixLabors.ImageSharp.Memory;
using SixLabors.ImageSharp.PixelFormats;
using QanaEdge.Model;

namespace QanaEdge.Imaging;

/// <summary>
/// Hardened decoding: file bytes → <see cref="RgbImage"/>, or an <see cref="ImageRejectedException"/> with a reason.
/// Order of checks: empty → file size → signature (accepted / known but unsupported / unknown) → structure (JPEG
/// segments to the end marker, at most <see cref="MaxJpegScans"/> scans; PNG chunks to IEND, text and colour profile
/// chunks dropped; EXIF orientation read from the file and the EXIF blocks dropped; BMP rows; TIFF strips inside the
/// file) → header identified and its dimensions checked → decode under a per-image memory budget → EXIF orientation
/// applied → alpha flattened on black → all-black / saturated check.
/// No other exception type leaves <see cref="Decode(ReadOnlySpan{byte}, DecodeLimits?)"/>. Thread-safe.
/// </summary>
public static class ImageDecoder
{
    /// <summary>A pixel counts as black when its brightest channel is at most this.</summary>
    public const int BlackLevel = 12;
    /// <summary>A pixel counts as blown out when its darkest channel is at least this.</summary>
    public const int SaturatedLevel = 245;
    /// <summary>An image is rejected when at least this fraction of its pixels is black (or blown out).</summary>
    public const double RejectFraction = 0.98;

    // Shared backing allocator; a small pool keeps a board's idle footprint low. The per-image cap is the
    // BudgetAllocator wrapped around it for each decode.
    private static readonly MemoryAllocator SharedAllocator =
        MemoryAllocator.Create(new MemoryAllocatorOptions { MaximumPoolSizeMegabytes = 16 });

    /// <summary>Decodes an image file held in memory.</summary>
    /// <exception cref="ImageRejectedException">The file is not an acceptable image; <see cref="ImageRejectedException.Reason"/> says why.</exception>
    public static RgbImage Decode(ReadOnlySpan<byte> fileBytes, DecodeLimits? limits = null) =>
        DecodeMeasured(fileBytes, limits, out _);

    /// <summary>Reads a file and decodes it; I/O failures other than a missing file surface as they are.</summary>
    public static RgbImage DecodeFile(string path, DecodeLimits? limits = null)
    {
        limits ??= DecodeLimits.Default;
        return Decode(ReadFile(path, limits), limits);
    }

    /// <summary>
    /// The bytes of an image file, refused as <see cref="RejectReason.TooLarge"/> from its size alone when it is over
    /// <see cref="DecodeLimits.MaxFileBytes"/>, before anything is read (a huge file is neither read into memory nor
    /// left to fail the read). I/O failures surface as they are.
    /// </summary>
    public static byte[] ReadFile(string path, DecodeLimits? limits = null)
    {
        limits ??= DecodeLimits.Default;
        // A pipe or a device reports no size and may never end (/dev/zero was read until memory ran out): the limit
        // holds for it too (WholeFile.ReadAtMost).
        return WholeFile.ReadAtMost(path, limits.MaxFileBytes, out long size)
            ?? throw new ImageRejectedException(RejectReason.TooLarge, size >= 0
                ? $"file is {size} bytes, over the {limits.MaxFileBytes}-byte limit"
                : $"file is over the {limits.MaxFileBytes}-byte limit (read without a known size)");
    }

    /// <summary>Decode, also reporting the peak bytes the image library held (for tests of the cap).</summary>
    internal static RgbImage DecodeMeasured(ReadOnlySpan<byte> fileBytes, DecodeLimits? limits, out long peakDecoderBytes)
    {
        limits ??= DecodeLimits.Default;
        limits.Validate();
        peakDecoderBytes = 0;

        if (fileBytes.IsEmpty)
            throw new ImageRejectedException(RejectReason.Empty, "file is empty");
        if (fileBytes.Length > limits.MaxFileBytes)
            throw new ImageRejectedException(RejectReason.TooLarge,
                $"file is {fileBytes.Length} bytes, over the {limits.MaxFileBytes}-byte limit");

        ImageKind kind = Sniff(fileBytes, out string formatName);
        if (kind == ImageKind.Unknown)
            throw new ImageRejectedException(RejectReason.NotAnImage, "no known image signature");
        if (kind == ImageKind.Unsupported)
            throw new ImageRejectedException(RejectReason.Unsupported,
                $"{formatName} images are not accepted (JPEG, PNG, BMP, TIFF only)");
        byte[] bytes = CheckStructure(fileBytes, kind, limits, out int orientation);
        var budget = new BudgetAllocator(SharedAllocator, limits.MaxDecoderBytes);
        var configuration = new Configuration(
            new JpegConfigurationModule(), new PngConfigurationModule(),
            new BmpConfigurationModule(), new TiffConfigurationModule())
        {
            MemoryAllocator = budget,
            // One image at a time on a small board; also keeps the accounting simple and the output deterministic.
            MaxDegreeOfParallelism = 1,
        };
        try
        {
            IImageInfo? info;
            using (var header = new MemoryStream(bytes, writable: false))
                info = Image.Identify(configuration, header, out _);
            if (info is null)
                throw new ImageRejectedException(RejectReason.Truncated, $"{formatName} header cannot be read");
            CheckDimensions(info.Width, info.Height, limits);

            using Image<Rgba32> image = Image.Load<Rgba32>(configuration, bytes);
            CheckDimensions(image.Width, image.Height, limits);
            // The orientation is applied while the frame is copied out, not with the library's AutoOrient: its
            // rotations build a second 4-byte-per-pixel frame under the budget, so a 24 MP photo stored sideways
            // (a phone held upright) needed 8 bytes per pixel and was refused as too large.
            RgbImage result = FlattenOnBlack(image.Frames.RootFrame, orientation);
            peakDecoderBytes = budget.PeakBytes;
            CheckExposure(result);
            return result;
        }
        catch (ImageRejectedException)
        {
            throw;
        }
        catch (Exception e)
        {
            peakDecoderBytes = budget.PeakBytes;
            throw Classify(e, formatName);
        }
    }

    /// <summary>Maps a failure inside the image library onto a reason. Anything unexpected from a decoder
    /// is, by construction, a consequence of the file's content: it becomes Truncated (damaged data).</summary>
    private static ImageRejectedException Classify(Exception e, string formatName)
    {
        // Decoders wrap what they hit (e.g. InvalidImageContentException around our allocator's refusal):
        // the innermost cause decides.
        for (Exception? cause = e; cause is not null; cause = cause.InnerException)
        {
            if (cause is InvalidMemoryOperationException or OutOfMemoryException or InsufficientExecutionStackException)
                return new ImageRejectedException(RejectReason.TooLarge,
                    $"{formatName} image needs too much memory to decode: {cause.Message}", e);
        }
        return e switch
        {
            NotSupportedException or NotImplementedException =>
                new ImageRejectedException(RejectReason.Unsupported, $"{formatName} variant not supported: {e.Message}", e),
            UnknownImageFormatException =>
                new ImageRejectedException(RejectReason.NotAnImage, "no known image signature", e),
            _ => new ImageRejectedException(RejectReason.Truncated, $"{formatName} data is damaged or incomplete: {e.Message}", e),
        };
    }

    private static void CheckDimensions(int width, int height, DecodeLimits limits)
    {
        if (width <= 0 || height <= 0)
            throw new ImageRejectedException(RejectReason.Truncated, $"header declares an empty image ({width}x{height})");
        if (width > limits.MaxDimension || height > limits.MaxDimension)
            throw new ImageRejectedException(RejectReason.TooLarge,
                $"image is {width}x{height}, over the {limits.MaxDimension}-pixel side limit");
        if ((long)width * height > limits.MaxPixels)
            throw new ImageRejectedException(RejectReason.TooLarge,
                $"image has {(long)width * height} pixels, over the {limits.MaxPixels}-pixel limit");
    }

    /// <summary>
    /// The EXIF orientation (1–8) the image must be turned by to be seen as displayed; 1 when none applies. Read from
    /// <paramref name="tiff"/>, bytes laid out as a TIFF (a JPEG's EXIF payload, a PNG's eXIf chunk, a TIFF file): the
    /// first Orientation entry (274, one SHORT) of its first directory, as ImageSharp reads it, and nothing else.
    /// <para>
    /// The EXIF blocks themselves are never handed to the library. Its EXIF reader only checks that each value lies
    /// inside the block, so values may overlap: a 64 kB JPEG segment of 2,727 text entries sharing one 32 kB value, with
    /// the EXIF and GPS links and the next-directory link all naming that directory, made a string per entry per visit,
    /// 588 MB for a 78 kB file; a thousand such links, or a PNG eXIf chunk of 20,000 entries sharing 1 MB, ran until
    /// memory ran out. This reader looks at no value but the orientation, so it costs nothing whatever the block holds.
    /// </para>
    /// </summary>
    private static int ExifOrientation(ReadOnlySpan<byte> tiff)
    {
        const uint orientationTag = 274, shortType = 3;
        if (tiff.Length < 8) return 1;
        // The library's rule: "II" is little-endian, anything else big-endian.
        bool little = tiff[0] == (byte)'I' && tiff[1] == (byte)'I';
        if (U16(tiff, little, 2) != 42) return 1;
        long ifd = U32(tiff, little, 4);
        if (ifd + 2 > tiff.Length) return 1;
        long end = Math.Min(ifd + 2 + 12 * U16(tiff, little, ifd), tiff.Length);
        for (long e = ifd + 2; e + 12 <= end; e += 12)
        {
            if (U16(tiff, little, e) != orientationTag) continue;
            if (U16(tiff, little, e + 2) != shortType || U32(tiff, little, e + 4) != 1) return 1;
            uint value = U16(tiff, little, e + 8);
            return value is > 1 and <= 8 ? (int)value : 1;
        }
        return 1;
    }

    /// <summary>Alpha is composited over black: a dermoscope's field of view is surrounded by black
    /// vignette, so transparent borders look like what the network saw in training. The pixels are written turned
    /// by the EXIF <paramref name="orientation"/> (as ImageSharp's AutoOrient turns them), so no turned copy of the
    /// frame is ever held.</summary>
    private static RgbImage FlattenOnBlack(ImageFrame<Rgba32> frame, int orientation)
    {
        int width = frame.Width, height = frame.Height;
        bool transposed = orientation >= 5;
        int outWidth = transposed ? height : width, outHeight = transposed ? width : height;
        byte[] pixels = new byte[checked(width * height * 3)];
        frame.ProcessPixelRows(accessor =>
        {
            for (int y = 0; y < accessor.Height; y++)
            {
                Span<Rgba32> row = accessor.GetRowSpan(y);
                // Stored pixel (x, y) goes to displayed (dx, dy); along a stored row the target moves by a fixed step.
                (int dx, int dy, int step) = orientation switch
                {
                    2 => (width - 1, y, -1),                          // mirrored left-right
                    3 => (width - 1, height - 1 - y, -1),             // rotated 180°
                    4 => (0, height - 1 - y, 1),                      // mirrored top-bottom
                    5 => (y, 0, outWidth),                            // transposed
                    6 => (height - 1 - y, 0, outWidth),               // rotated 90° clockwise
                    7 => (height - 1 - y, width - 1, -outWidth),      // transversed
                    8 => (y, width - 1, -outWidth),                   // rotated 90° counter-clockwise
                    _ => (0, y, 1),
                };
                int d = (dy * outWidth + dx) * 3;
                step *= 3;
                for (int x = 0; x < row.Length; x++, d += step)
                {
                    Rgba32 p = row[x];
                    if (p.A == 255)
                    {
                        pixels[d] = p.R;
                        pixels[d + 1] = p.G;
                        pixels[d + 2] = p.B;
                    }
                    else
                    {
                        // c·a/255 rounded half up, exact in integers.
                        pixels[d] = (byte)((p.R * p.A + 127) / 255);
                        pixels[d + 1] = (byte)((p.G * p.A + 127) / 255);
                        pixels[d + 2] = (byte)((p.B * p.A + 127) / 255);
                    }
                }
            }
        });
        return new RgbImage(outWidth, outHeight, pixels);
    }

    private static void CheckExposure(RgbImage image)
    {
        ReadOnlySpan<byte> px = image.Pixels;
        long black = 0, saturated = 0, n = (long)image.Width * image.Height;
        for (int i = 0; i < px.Length; i += 3)
        {
            byte r = px[i], g = px[i + 1], b = px[i + 2];
            if (r <= BlackLevel && g <= BlackLevel && b <= BlackLevel) black++;
            else if (r >= SaturatedLevel && g >= SaturatedLevel && b >= SaturatedLevel) saturated++;
        }
        if (black >= RejectFraction * n)
            throw new ImageRejectedException(RejectReason.AllBlack,
                $"{100.0 * black / n:F1}% of the pixels are black");
        if (saturated >= RejectFraction * n)
            throw new ImageRejectedException(RejectReason.Saturated,
                $"{100.0 * saturated / n:F1}% of the pixels are saturated");
    }

    private enum ImageKind { Unknown, Unsupported, Jpeg, Png, Bmp, Tiff }

    /// <summary>Our own signature test, so that "not an image" and "an image we do not take" are told apart
    /// without trusting a decoder's guess (TGA, for one, has no signature at all).</summary>
    private static ImageKind Sniff(ReadOnlySpan<byte> b, out string name)
    {
        (ImageKind kind, name) = b switch
        {
            [0xFF, 0xD8, 0xFF, ..] => (ImageKind.Jpeg, "JPEG"),
            [0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A, ..] => (ImageKind.Png, "PNG"),
            [(byte)'B', (byte)'M', _, _, _, _, _, _, _, _, _, _, _, _, ..] => (ImageKind.Bmp, "BMP"),
            [(byte)'I', (byte)'I', 42, 0, ..] or [(byte)'M', (byte)'M', 0, 42, ..] => (ImageKind.Tiff, "TIFF"),
            [(byte)'I', (byte)'I', 43, 0, ..] or [(byte)'M', (byte)'M', 0, 43, ..] => (ImageKind.Unsupported, "BigTIFF"),
            [(byte)'G', (byte)'I', (byte)'F', (byte)'8', ..] => (ImageKind.Unsupported, "GIF"),
            [(byte)'R', (byte)'I', (byte)'F', (byte)'F', _, _, _, _, (byte)'W', (byte)'E', (byte)'B', (byte)'P', ..] => (ImageKind.Unsupported, "WebP"),
            [_, _, _, _, (byte)'f', (byte)'t', (byte)'y', (byte)'p', ..] => (ImageKind.Unsupported, "HEIF/AVIF"),
            [0x00, 0x00, 0x00, 0x0C, (byte)'j', (byte)'P', 0x20, 0x20, ..] or [0xFF, 0x4F, 0xFF, 0x51, ..] => (ImageKind.Unsupported, "JPEG 2000"),
            [0xFF, 0x0A, ..] or [0x00, 0x00, 0x00, 0x0C, (byte)'J', (byte)'X', (byte)'L', 0x20, ..] => (ImageKind.Unsupported, "JPEG XL"),
            [(byte)'q', (byte)'o', (byte)'i', (byte)'f', ..] => (ImageKind.Unsupported, "QOI"),
            [(byte)'8', (byte)'B', (byte)'P', (byte)'S', ..] => (ImageKind.Unsupported, "PSD"),
            [(byte)'D', (byte)'D', (byte)'S', (byte)' ', ..] => (ImageKind.Unsupported, "DDS"),
            [0x00, 0x00, 0x01, 0x00, _, _, ..] => (ImageKind.Unsupported, "ICO"),
            [(byte)'P', >= (byte)'1' and <= (byte)'7', 0x0A or 0x0D or 0x20 or 0x09, ..] => (ImageKind.Unsupported, "Netpbm"),
            _ => (ImageKind.Unknown, "unknown"),
        };
        return kind;
    }

    /// <summary>
    /// The most scans a JPEG may have. Each scan of a progressive JPEG is a pass over the whole image, so thousands of
    /// tiny refinement scans make a small file cost hours of decoding (134 s for 10,000 scans at 20 MP, measured);
    /// encoders write about 10 (libjpeg's progressive script), and libjpeg-turbo's guard against the same is its scan
    /// limit.
    /// </summary>
    public const int MaxJpegScans = 100;

    /// <summary>
    /// The file's structure, checked before any decoder sees it; returns the bytes to decode (a copy). A file cut short
    /// (a capture copied while still being written) must not decode into a half-grey picture: a JPEG needs an
    /// end-of-image marker after its scans and a PNG its IEND chunk; what follows them (a phone's video trailer, a
    /// vendor's data) is ignored. A JPEG with more than <see cref="MaxJpegScans"/> scans is refused. PNG text chunks
    /// and colour profiles are dropped: ImageSharp inflates compressed ones in full, outside our memory budget (a
    /// 1.5 MB zTXt chunk became 4.7 GB), and neither changes a pixel (ImageSharp applies no ICC profile). The EXIF
    /// orientation (<paramref name="orientation"/>) is read here, from the file, and the EXIF blocks of JPEG and PNG
    /// are dropped with the rest (<see cref="ExifOrientation"/>).
    /// </summary>
    private static byte[] CheckStructure(ReadOnlySpan<byte> b, ImageKind kind, DecodeLimits limits, out int orientation)
    {
        orientation = 1;
        switch (kind)
        {
            case ImageKind.Jpeg:
            {
                List<(int Start, int End)>? dropped = null;
                int end = JpegEnd(b, ref dropped, out Range exif);
                orientation = ExifOrientation(b[exif]);
                return dropped is null ? b[..end].ToArray() : WithoutRanges(b[..end], dropped);
            }
            case ImageKind.Png:
            {
                byte[] kept = WithoutAncillaryText(b, out Range exif);
                orientation = ExifOrientation(b[exif]);
                return kept;
            }
            case ImageKind.Bmp:
                CheckBmpRows(b);
                return b.ToArray();
            case ImageKind.Tiff:
                CheckTiffData(b, limits);
                // A TIFF's orientation is an entry of its first directory (ImageSharp 2.1 keeps it on the frame).
                orientation = ExifOrientation(b);
                return FirstDirectoryForDecoding(b);
            default:
                return b.ToArray();
        }
    }

    /// <summary>
    /// Walks a JPEG's segments from its start-of-image marker: each marker segment by its length, each scan's
    /// entropy-coded data to the next marker that is not a restart or a stuffed byte. Returns the offset just past
    /// the end-of-image marker that follows the scans.
    /// <para>
    /// Lists in <paramref name="dropped"/> (made at the first) the segments the decoder is not to read: comments and
    /// application segments other than JFIF (APP0) and Adobe's (APP14, the colour transform); <paramref name="exif"/>
    /// is the payload of the first EXIF segment (APP1), which holds the orientation. None of them makes a pixel, and ImageSharp 2.1 joins the ICC, EXIF and XMP segments it finds by
    /// copying what it has each time: a 65 MB file of a thousand 65 kB ICC, EXIF or XMP segments took 8–9 s and
    /// 1.3 GB outside the decoder's budget, where the same image without them takes 0.1 s and 54 MB.
    /// </para>
    /// </summary>
    private static int JpegEnd(ReadOnlySpan<byte> b, ref List<(int Start, int End)>? dropped, out Range exif)
    {
        int pos = 2, scans = 0;
        exif = default;
        while (true)
        {
            // The next marker: 0xFF (any number of fill bytes), then the code. Stray bytes before it are skipped, as
            // libjpeg does ("extraneous bytes before marker").
            if (pos >= b.Length) return Cut(scans);
            if (b[pos] != 0xFF)
            {
                int ff = b[pos..].IndexOf((byte)0xFF);
                if (ff < 0) return Cut(scans);
                pos += ff;
            }
            while (pos < b.Length && b[pos] == 0xFF) pos++;
            if (pos >= b.Length) return Cut(scans);
            int segment = pos - 1;   // its last 0xFF
            byte marker = b[pos++];
            if (marker == 0xD9)
            {
                if (scans == 0) throw new ImageRejectedException(RejectReason.Truncated, "JPEG ends before its image data");
                return pos;
            }
            if (marker is 0x01 or (>= 0xD0 and <= 0xD7)) continue; // TEM and restart markers carry no length
            if (pos + 2 > b.Length) return Cut(scans);
            int length = BinaryPrimitives.ReadUInt16BigEndian(b.Slice(pos, 2));
            if (length < 2 || pos + length > b.Length) return Cut(scans);
            if (marker == 0xFE || marker is >= 0xE1 and <= 0xEF and not 0xEE)
            {
                const int exifHeader = 6;   // "Exif\0\0", then the TIFF-laid-out block
                if (exif.Equals(default(Range)) && marker == 0xE1 && b.Slice(pos + 2, length - 2).StartsWith("Exif\0\0"u8))
                    exif = (pos + 2 + exifHeader)..(pos + length);
                (dropped ??= []).Add((segment, pos + length));
            }
            pos += length;
            if (marker != 0xDA) continue;
            if (++scans > MaxJpegScans)
                throw new ImageRejectedException(RejectReason.TooLarge,
                    $"JPEG has more than {MaxJpegScans} scans: decoding it would take far too long (encoders write about 10)");
            // Entropy-coded data: 0xFF is followed by 0x00 (a stuffed byte), a restart marker, or a fill byte; any
            // other code is the next marker.
            while (true)
            {
                int ff = b[pos..].IndexOf((byte)0xFF);
                if (ff < 0) return Cut(scans);
                pos += ff;
                if (pos + 1 >= b.Length) return Cut(scans);
                byte next = b[pos + 1];
                if (next == 0x00 || next is >= 0xD0 and <= 0xD7) { pos += 2; continue; }
                if (next == 0xFF) { pos++; continue; }
                break;
            }
        }

        static int Cut(int scans) => throw new ImageRejectedException(RejectReason.Truncated,
            scans == 0 ? "JPEG ends before its image data" : "JPEG ends before its end-of-image marker");
    }

    /// <summary>A copy of <paramref name="b"/> without the ranges (in order, not overlapping).</summary>
    private static byte[] WithoutRanges(ReadOnlySpan<byte> b, List<(int Start, int End)> ranges)
    {
        int removed = 0;
        foreach (var (start, end) in ranges) removed += end - start;
        var result = new byte[b.Length - removed];
        int from = 0, at = 0;
        foreach (var (start, end) in ranges)
        {
            b[from..start].CopyTo(result.AsSpan(at));
            at += start - from;
            from = end;
        }
        b[from..].CopyTo(result.AsSpan(at));
        return result;
    }

    /// <summary>
    /// Walks a PNG's chunks to IEND and returns the file without its tEXt, zTXt, iTXt, iCCP and eXIf chunks (and without
    /// anything after IEND); <paramref name="exif"/> is the data of the first eXIf chunk. Chunk checksums are left to
    /// the decoder.
    /// </summary>
    private static byte[] WithoutAncillaryText(ReadOnlySpan<byte> b, out Range exif)
    {
        exif = default;
        const int signature = 8;
        var kept = new List<(int Start, int Length)>();
        int pos = signature;
        bool dropped = false;
        while (true)
        {
            if (pos + 8 > b.Length) throw new ImageRejectedException(RejectReason.Truncated, "PNG ends before its IEND chunk");
            long length = BinaryPrimitives.ReadUInt32BigEndian(b.Slice(pos, 4));
            ReadOnlySpan<byte> type = b.Slice(pos + 4, 4);
            long chunk = 12 + length;
            if (pos + chunk > b.Length) throw new ImageRejectedException(RejectReason.Truncated, "PNG ends before its IEND chunk");
            bool isExif = type.SequenceEqual("eXIf"u8);
            if (isExif && exif.Equals(default(Range))) exif = (pos + 8)..(pos + 8 + (int)length);
            bool drop = isExif || type.SequenceEqual("tEXt"u8) || type.SequenceEqual("zTXt"u8) || type.SequenceEqual("iTXt"u8) || type.SequenceEqual("iCCP"u8);
            if (drop) dropped = true;
            else kept.Add((pos, (int)chunk));
            pos += (int)chunk;
            if (type.SequenceEqual("IEND"u8)) break;
        }
        if (!dropped) return b[..pos].ToArray();
        var result = new byte[signature + kept.Sum(k => k.Length)];
        b[..signature].CopyTo(result);
        int at = signature;
        foreach (var (start, length) in kept)
        {
            b.Slice(start, length).CopyTo(result.AsSpan(at));
            at += length;
        }
        return result;
    }

    /// <summary>
    /// The first TIFF directory (the image decoded) must lie in the file, and so must each of its strips
    /// (offset + byte count). Writers that put the directory before the pixels leave it whole in a file cut short,
    /// and ImageSharp 2.1 then decodes the missing strips as black instead of failing.
    /// <para>
    /// A tiled TIFF is refused here: ImageSharp 2.1 decodes none, but parses its tile lists whole, as it does strip
    /// lists, before saying so. The strip lists may hold no more entries
    /// than the image has strips (TIFF 6.0: ⌈length / RowsPerStrip⌉, times SamplesPerPixel when the planes are
    /// separate), and the declared size is checked against the limits here, before the header is identified:
    /// ImageSharp 2.1 parses the lists whole at identification, about 70 bytes per entry outside the decoder's
    /// budget, so a 72 MB file listing 9 million strips for a 64×64 image took 776 MB where a 64-strip one takes
    /// 53 MB. So that the bound holds, the directory must give the image's size (within the side and pixel limits),
    /// its strip lists as SHORT or LONG (TIFF 6.0; the bound counts no other type), no more than
    /// <see cref="MaxTiffSamples"/> separate planes, and each of the entries the bound is made from
    /// (<see cref="TiffLayoutTags"/>) once.
    /// </para>
    /// </summary>
    private static void CheckTiffData(ReadOnlySpan<byte> b, DecodeLimits limits)
    {
        bool little = b[0] == (byte)'I';
        long length = b.Length;
        static ImageRejectedException Cut(string what) => new(RejectReason.Truncated, $"TIFF ends before {what}");

        if (length < 8) throw Cut("its first directory");
        long ifd = U32(b, little, 4);
        if (ifd + 2 > length) throw Cut("its first directory");
        long entries = U16(b, little, ifd);
        if (ifd + 2 + entries * 12 > length) throw Cut("the end of its first directory");
        // (offsets, byte counts) of the strips.
        Span<(long At, long Count, int Size)> lists = stackalloc (long, long, int)[2];
        // What sets how many strips the image has; -1 where the directory does not say (a single SHORT or LONG).
        long width = -1, height = -1, rowsPerStrip = -1, samples = -1, planar = -1;
        int seen = 0;
        for (long e = ifd + 2; e < ifd + 2 + entries * 12; e += 12)
        {
            uint tag = U16(b, little, e);
            // Each of these is read once here, while the library parses every copy of a tag: a 4-million-entry strip
            // list followed by a real one-entry list passed the bound below with the last and cost 264 MB.
            int bit = Array.IndexOf(TiffLayoutTags, tag);
            if (bit >= 0 && (seen & (1 << bit)) != 0)
                throw new ImageRejectedException(RejectReason.Truncated, $"TIFF directory gives tag {tag} more than once");
            if (bit >= 0) seen |= 1 << bit;
            if (tag is >= 322 and <= 325)
                throw new ImageRejectedException(RejectReason.Unsupported, "TIFF is tiled; only striped TIFF is decoded");
            uint type = U16(b, little, e + 2);
            int size = type switch { 3 => 2, 4 => 4, _ => 0 };   // SHORT or LONG; anything else is the decoder's to refuse
            // ...but a strip list of another type would pass the bound below uncounted, to be parsed whole by the library.
            if (size == 0 && tag is 273 or 279)
                throw new ImageRejectedException(RejectReason.Unsupported, $"TIFF strip list (tag {tag}) is of type {type}; TIFF 6.0 lists strips as SHORT or LONG");
            if (size == 0) continue;
            long count = U32(b, little, e + 4);
            if (count == 1)
            {
                long value = size == 2 ? U16(b, little, e + 8) : U32(b, little, e + 8);
                switch (tag)
                {
                    case 256: width = value; break;
                    case 257: height = value; break;
                    case 277: samples = value; break;
                    case 278: rowsPerStrip = value; break;
                    case 284: planar = value; break;
                }
            }
            int slot = tag switch { 273 => 0, 279 => 1, _ => -1 };
            if (slot < 0) continue;
            long at = count * size <= 4 ? e + 8 : U32(b, little, e + 8);
            if (at + count * size > length) throw Cut("its strip list");
            lists[slot] = (at, count, size);
        }
        // Without a size there is no bound on the lists, and the library parses them before it finds the size missing.
        if (width <= 0 || height <= 0)
            throw new ImageRejectedException(RejectReason.Truncated,
                $"TIFF directory gives no image size (width {(width < 0 ? "unset" : width)}, length {(height < 0 ? "unset" : height)})");
        if (width > limits.MaxDimension || height > limits.MaxDimension)
            throw new ImageRejectedException(RejectReason.TooLarge, $"image is {width}x{height}, over the {limits.MaxDimension}-pixel side limit");
        if (width * height > limits.MaxPixels)
            throw new ImageRejectedException(RejectReason.TooLarge, $"image has {width * height} pixels, over the {limits.MaxPixels}-pixel limit");
        // Separate planes multiply the strips by the samples; no image the library decodes has more than 4.
        if (planar == 2 && samples > MaxTiffSamples)
            throw new ImageRejectedException(RejectReason.Unsupported,
                $"TIFF has {samples} samples per pixel in separate planes (at most {MaxTiffSamples} are decoded)");
        long planes = planar == 2 ? Math.Max(1, samples) : 1;
        // RowsPerStrip defaults to 2^32 − 1: the whole image in one strip.
        long strips = planes * (rowsPerStrip > 0 ? (height + rowsPerStrip - 1) / rowsPerStrip : 1);
        long listed = Math.Max(lists[0].Count, lists[1].Count);
        if (listed > strips)
            throw new ImageRejectedException(RejectReason.Truncated,
                $"TIFF lists {listed} strips; a {width}x{height} image with RowsPerStrip {(rowsPerStrip > 0 ? rowsPerStrip : "unset")} has {strips}");
        var (offsetsAt, offsets, offsetSize) = lists[0];
        var (countsAt, counts, countSize) = lists[1];
        if (offsetSize == 0 || countSize == 0) return;
        for (long i = 0; i < Math.Min(offsets, counts); i++)
        {
            long start = offsetSize == 2 ? U16(b, little, offsetsAt + 2 * i) : U32(b, little, offsetsAt + 4 * i);
            long bytes = countSize == 2 ? U16(b, little, countsAt + 2 * i) : U32(b, little, countsAt + 4 * i);
            if (start + bytes > length) throw Cut("its last pixel data");
        }
    }

    /// <summary>The directory entries <see cref="CheckTiffData"/> reads: sides, strip lists and what sets their length.</summary>
    private static readonly uint[] TiffLayoutTags = [256, 257, 273, 277, 278, 279, 284];

    /// <summary>The most samples per pixel a TIFF with separate planes may have (RGB with alpha, CMYK).</summary>
    private const long MaxTiffSamples = 4;

    /// <summary>A TIFF's 16-bit value at <paramref name="at"/>, in the byte order its header names (<paramref name="little"/>: "II").</summary>
    private static uint U16(ReadOnlySpan<byte> b, bool little, long at) =>
        little ? BinaryPrimitives.ReadUInt16LittleEndian(b.Slice((int)at, 2)) : BinaryPrimitives.ReadUInt16BigEndian(b.Slice((int)at, 2));

    /// <summary>A TIFF's 32-bit value at <paramref name="at"/>, as <see cref="U16"/>.</summary>
    private static uint U32(ReadOnlySpan<byte> b, bool little, long at) =>
        little ? BinaryPrimitives.ReadUInt32LittleEndian(b.Slice((int)at, 4)) : BinaryPrimitives.ReadUInt32BigEndian(b.Slice((int)at, 4));

    /// <summary>Value bytes of a directory entry larger than this are dropped unless the pixels need them (<see cref="FirstDirectoryForDecoding"/>).</summary>
    private const long MaxTiffMetadataBytes = 64 * 1024;

    /// <summary>
    /// Most value bytes the entries handed to the decoder may declare in all, strip lists aside: room for a
    /// 16-bit colour map (384 kB) and a few dozen entries at <see cref="MaxTiffMetadataBytes"/>.
    /// </summary>
    private const long MaxTiffDirectoryValueBytes = 1024 * 1024;

    /// <summary>
    /// The copy of a TIFF (checked by <see cref="CheckTiffData"/>) handed to the decoder: its first directory alone, and
    /// without what does not make a pixel and costs memory outside the budget.
    /// <list type="bullet">
    /// <item>The chain ends after the first directory. Only its image is classified, but ImageSharp 2.1 parses every
    /// directory of the chain and decodes every page: a 6 MB file of 60,000 one-pixel pages took 7.8 s and 490 MB of
    /// managed memory outside the decoder's budget.</item>
    /// <item>Entries whose values pass <see cref="MaxTiffMetadataBytes"/> are dropped, except those the pixels are
    /// made from (strip lists, bounded by <see cref="CheckTiffData"/>; colour map; JPEG tables), and so are
    /// the links to the EXIF, GPS, interoperability and sub-image directories. The library reads every value whole,
    /// several times its size in memory: one 70 MB text or undefined-byte entry in a 64 × 64 image took 395–532 MB,
    /// where a legitimate 72 MB uncompressed 24-megapixel TIFF peaks at 288 MB. The orientation stays: it is an entry of
    /// the first directory (274), not of the EXIF one.</item>
    /// <item>The values of the entries kept, strip lists aside, may add up to no more than
    /// <see cref="MaxTiffDirectoryValueBytes"/>; past it the file is refused. Values may overlap: 20,000 text entries of
    /// exactly 64 kB, all naming one 64 kB run, are each under the drop, and the library read them to 2.6 GB while
    /// identifying the header; copies of the colour map or JPEG tables were not bounded at all.</item>
    /// </list>
    /// </summary>
    private static byte[] FirstDirectoryForDecoding(ReadOnlySpan<byte> b)
    {
        byte[] copy = b.ToArray();
        bool little = b[0] == (byte)'I';
        int ifd = (int)U32(b, little, 4), entries = (int)U16(b, little, ifd), kept = 0;
        long keptValueBytes = 0;
        for (int i = 0; i < entries; i++)
        {
            int e = ifd + 2 + 12 * i;
            uint tag = U16(b, little, e);
            long valueBytes = U32(b, little, e + 4) * (long)(U16(b, little, e + 2) switch { 1 or 2 or 6 or 7 => 1, 3 or 8 => 2, 4 or 9 or 11 or 13 => 4, 5 or 10 or 12 => 8, _ => 0 });
            bool drop = tag is 330 or 34665 or 34853 or 40965
                || (valueBytes > MaxTiffMetadataBytes && tag is not (273 or 279 or 320 or 347));
            if (drop) continue;
            if (tag is not (273 or 279)) keptValueBytes += valueBytes;
            if (kept != i) Array.Copy(copy, e, copy, ifd + 2 + 12 * kept, 12);
            kept++;
        }
        if (keptValueBytes > MaxTiffDirectoryValueBytes)
            throw new ImageRejectedException(RejectReason.TooLarge,
                $"TIFF directory holds {keptValueBytes} bytes of values besides its strip lists, over the {MaxTiffDirectoryValueBytes}-byte limit");
        if (kept != entries)
        {
            if (little) BinaryPrimitives.WriteUInt16LittleEndian(copy.AsSpan(ifd), (ushort)kept);
            else BinaryPrimitives.WriteUInt16BigEndian(copy.AsSpan(ifd), (ushort)kept);
        }
        // The link to the next directory, just after the kept entries (where the file holds it).
        int link = ifd + 2 + 12 * kept;
        if (link + 4 <= copy.Length) copy.AsSpan(link, 4).Clear();
        return copy;
    }

    /// <summary>An uncompressed BMP must hold the pixel rows its header declares (TIFF: the decoder's own checks).</summary>
    private static void CheckBmpRows(ReadOnlySpan<byte> b)
    {
        // bfSize is unreliable in practice (some writers leave 0): compute what uncompressed pixel data needs.
        uint dataOffset = BinaryPrimitives.ReadUInt32LittleEndian(b.Slice(10, 4));
        if (dataOffset >= (uint)b.Length)
            throw new ImageRejectedException(RejectReason.Truncated, "BMP ends before its pixel data");
        const uint rgb = 0, bitFields = 3;
        long width, height;
        int bitsPerPixel;
        uint compression;
        uint headerSize = b.Length >= 18 ? BinaryPrimitives.ReadUInt32LittleEndian(b.Slice(14, 4)) : 0;
        if (headerSize == 12 && b.Length >= 26)
        {
            // OS/2 1.x core header: 16-bit sizes, never compressed. Without this check ImageSharp 2.1 decoded such a
            // file cut short without an error, the missing rows filled with bytes that were never in the file.
            width = BinaryPrimitives.ReadInt16LittleEndian(b.Slice(18, 2));
            height = Math.Abs((long)BinaryPrimitives.ReadInt16LittleEndian(b.Slice(20, 2)));
            bitsPerPixel = BinaryPrimitives.ReadUInt16LittleEndian(b.Slice(24, 2));
            compression = rgb;
        }
        else if (headerSize == 16 && b.Length >= 30)
        {
            // OS/2 2.x short header: the first 16 bytes of the Windows header, never compressed. ImageSharp 2.1 decoded
            // such a file cut short without an error, repeating the last row it read for the missing ones.
            width = BinaryPrimitives.ReadInt32LittleEndian(b.Slice(18, 4));
            height = Math.Abs((long)BinaryPrimitives.ReadInt32LittleEndian(b.Slice(22, 4)));
            bitsPerPixel = BinaryPrimitives.ReadUInt16LittleEndian(b.Slice(28, 2));
            compression = rgb;
        }
        else if (headerSize >= 40 && b.Length >= 34)
        {
            // The Windows headers, and OS/2 2.x's full one (64 bytes), laid out alike up to the compression.
            width = BinaryPrimitives.ReadInt32LittleEndian(b.Slice(18, 4));
            height = Math.Abs((long)BinaryPrimitives.ReadInt32LittleEndian(b.Slice(22, 4)));
            bitsPerPixel = BinaryPrimitives.ReadUInt16LittleEndian(b.Slice(28, 2));
            compression = BinaryPrimitives.ReadUInt32LittleEndian(b.Slice(30, 4));
        }
        else return;
        if ((compression == rgb || compression == bitFields) && width > 0 && bitsPerPixel is > 0 and <= 32)
        {
            long rowBytes = (width * bitsPerPixel + 31) / 32 * 4;
            if (dataOffset + rowBytes * height > b.Length)
                throw new ImageRejectedException(RejectReason.Truncated, "BMP ends before its last pixel row");
        }
    }
}
