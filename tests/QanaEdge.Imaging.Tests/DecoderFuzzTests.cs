using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Formats.Png;
using SixLabors.ImageSharp.PixelFormats;
using Xunit.Abstractions;

namespace QanaEdge.Imaging.Tests;

/// <summary>
/// Thousands of mutated real JPEGs and PNGs (made from the JPEGs): each must decode or be rejected with a
/// reason, nothing else may escape, and the decoder must stay under its memory budget. Seeded: a failure
/// names the case that reproduces it.
/// </summary>
public class DecoderFuzzTests(ITestOutputHelper output)
{
    private const int JpegCases = 2000;
    private const int PngCases = 1500;

    // Tighter than the defaults so that a mutated header claiming a big image is refused (or stopped by the
    // cap) quickly instead of decoding megapixels of noise; the cap is what is under test.
    private static readonly DecodeLimits Limits = new() { MaxPixels = 2_000_000, MaxDecoderBytes = 24L << 20 };

    [Fact]
    public void Mutated_jpegs_and_pngs_decode_or_are_rejected_with_a_reason()
    {
        byte[][] jpegs = Samples.JpegPaths(6).Select(File.ReadAllBytes).ToArray();
        byte[][] pngs = jpegs.Take(3).Select(j =>
        {
            using Image<Rgb24> image = Samples.LoadRgb(j);
            return Samples.Encode(image, new PngEncoder());
        }).ToArray();

        var outcomes = new Dictionary<string, int>();
        var failures = new List<string>();
        long worstPeak = 0, worstManaged = 0;
        var random = new Random(20261127);
        for (int i = 0; i < JpegCases + PngCases; i++)
        {
            bool png = i >= JpegCases;
            byte[] source = png ? pngs[i % pngs.Length] : jpegs[i % jpegs.Length];
            byte[] mutant = Mutate(source, random, png);
            long before = GC.GetAllocatedBytesForCurrentThread();
            string outcome;
            long peak = 0;
            try
            {
                RgbImage image = ImageDecoder.DecodeMeasured(mutant, Limits, out peak);
                Assert.Equal((long)image.Width * image.Height * 3, image.Pixels.LongLength);
                outcome = "decoded";
            }
            catch (ImageRejectedException e)
            {
                outcome = e.ReasonCode;
                if (!Enum.IsDefined(e.Reason) || string.IsNullOrWhiteSpace(e.Message))
                    failures.Add($"case {i}: rejection without a reason ({e.Message})");
            }
            catch (Exception e)
            {
                outcome = "escaped";
                failures.Add($"case {i} ({(png ? "png" : "jpeg")}): {e.GetType().Name} escaped: {e.Message}");
            }
            long managed = GC.GetAllocatedBytesForCurrentThread() - before;
            worstPeak = Math.Max(worstPeak, peak);
            worstManaged = Math.Max(worstManaged, managed);
            if (peak > Limits.MaxDecoderBytes)
                failures.Add($"case {i}: decoder held {peak} bytes, over the {Limits.MaxDecoderBytes} cap");
            // Managed allocations outside the budgeted buffers: the file copy, our RGB output and the library's
            // small bookkeeping. Anything near the cap would mean a buffer that bypasses the allocator.
            long allowance = Limits.MaxDecoderBytes + 3 * Limits.MaxPixels + 4L * mutant.Length;
            if (managed > allowance)
                failures.Add($"case {i}: {managed} managed bytes allocated, over {allowance}");
            outcomes[outcome] = outcomes.GetValueOrDefault(outcome) + 1;
        }

        output.WriteLine(string.Join(", ", outcomes.OrderBy(o => o.Key).Select(o => $"{o.Key} {o.Value}")));
        output.WriteLine($"worst decoder peak {worstPeak} bytes, worst managed allocation {worstManaged} bytes");
        Assert.True(failures.Count == 0, string.Join("\n", failures.Take(20)));
        // The mutations must reach the decoders, not only our pre-checks: some mutants still decode and some
        // are refused by a decoder (damaged data).
        Assert.True(outcomes.GetValueOrDefault("decoded") > 0, "no mutant decoded");
        Assert.True(outcomes.GetValueOrDefault("truncated") > 0, "no mutant was refused as damaged");
    }

    private static byte[] Mutate(byte[] source, Random random, bool png)
    {
        var data = new List<byte>(source);
        int rounds = 1 + random.Next(3);
        for (int r = 0; r < rounds; r++)
        {
            // Mostly leave the last 16 bytes (end marker, IEND) alone so mutants pass the completeness check
            // and reach the decoder; truncation has its own mutation.
            int body = Math.Max(1, data.Count - 16);
            switch (random.Next(8))
            {
                case 0: // flip a few bits
                    for (int k = 1 + random.Next(8); k > 0; k--)
                    {
                        int p = random.Next(body);
                        data[p] ^= (byte)(1 << random.Next(8));
                    }
                    break;
                case 1: // overwrite a run with noise
                {
                    int p = random.Next(body), n = Math.Min(1 + random.Next(32), data.Count - p);
                    for (int k = 0; k < n; k++) data[p + k] = (byte)random.Next(256);
                    break;
                }
                case 2: // truncate anywhere
                {
                    int keep = random.Next(1, data.Count);
                    data.RemoveRange(keep, data.Count - keep);
                    break;
                }
                case 3: // insert noise
                {
                    int p = random.Next(body);
                    var noise = new byte[1 + random.Next(64)];
                    random.NextBytes(noise);
                    data.InsertRange(p, noise);
                    break;
                }
                case 4: // delete a run
                {
                    int p = random.Next(body), n = Math.Min(1 + random.Next(256), data.Count - p - 1);
                    if (n > 0) data.RemoveRange(p, n);
                    break;
                }
                case 5: // duplicate a region elsewhere
                {
                    int p = random.Next(body), n = Math.Min(1 + random.Next(512), data.Count - p);
                    data.InsertRange(random.Next(body), data.GetRange(p, n));
                    break;
                }
                default: // boundary values in the header area, where sizes and counts live
                {
                    byte[] values = [0x00, 0xFF, 0x7F, 0x80, 0x01, 0xFE];
                    for (int k = 1 + random.Next(4); k > 0; k--)
                        data[random.Next(Math.Min(body, 600))] = values[random.Next(values.Length)];
                    break;
                }
            }
        }
        byte[] mutant = data.ToArray();
        // Half of the PNG mutants get valid chunk CRCs again, so the decoder goes past its checksum test
        // and meets the damaged content itself.
        if (png && random.Next(2) == 0) FixPngCrcs(mutant);
        return mutant;
    }

    private static void FixPngCrcs(byte[] png)
    {
        int p = 8;
        while (p + 12 <= png.Length)
        {
            long length = (png[p] << 24 | png[p + 1] << 16 | png[p + 2] << 8 | png[p + 3]) & 0xFFFFFFFFL;
            if (length > png.Length - p - 12) return;
            uint crc = Crc32(png.AsSpan(p + 4, (int)length + 4));
            int c = p + 8 + (int)length;
            png[c] = (byte)(crc >> 24); png[c + 1] = (byte)(crc >> 16); png[c + 2] = (byte)(crc >> 8); png[c + 3] = (byte)crc;
            p = c + 4;
        }
    }

    private static readonly uint[] CrcTable = Enumerable.Range(0, 256).Select(n =>
    {
        uint c = (uint)n;
        for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        return c;
    }).ToArray();

    private static uint Crc32(ReadOnlySpan<byte> data)
    {
        uint crc = 0xFFFFFFFF;
        foreach (byte b in data) crc = CrcTable[(crc ^ b) & 0xFF] ^ (crc >> 8);
        return ~crc;
    }
}
