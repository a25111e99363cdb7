namespace QanaEdge.Imaging;

/// <summary>
/// Antialiased area resampling (box filter with exact coverage weights) of a square crop to a square output.
/// Exact in integers: along an axis the crop's S source pixels and the N output pixels are laid on a common
/// grid of S·N units (a source pixel spans N units, an output pixel S units); the weight of source pixel i in
/// output pixel j is the length of their overlap, an integer, and the 2-D weight is the product of the two
/// axes' weights. Each output is Σ w·p / S² rounded half up, so the result is the same on every machine and
/// the mean of the image is preserved up to that rounding. Works for shrinking and enlarging alike.
/// Allocation-free: it writes into the caller's buffer and computes weights on the fly.
/// </summary>
public static class Resampler
{
    /// <summary>Resamples <paramref name="crop"/> of <paramref name="image"/> to <paramref name="size"/>×<paramref name="size"/> HWC RGB in <paramref name="dstHwc"/>.</summary>
    public static void AreaResize(RgbImage image, CropBox crop, int size, Span<byte> dstHwc)
    {
        ArgumentNullException.ThrowIfNull(image);
        if (!image.Contains(crop))
            throw new ArgumentOutOfRangeException(nameof(crop), $"crop {crop} is not inside the {image.Width}x{image.Height} image");
        if (dstHwc.Length < size * size * 3)
            throw new ArgumentException($"destination holds {dstHwc.Length} bytes, {size * size * 3} needed", nameof(dstHwc));
        AreaResize(image.Pixels, image.Width, crop, size, dstHwc);
    }

    /// <summary>The same on a raw HWC RGB buffer of the given width (for callers that hold pixels outside an <see cref="RgbImage"/>).</summary>
    public static void AreaResize(ReadOnlySpan<byte> srcHwc, int srcWidth, CropBox crop, int size, Span<byte> dstHwc)
    {
        if (size <= 0) throw new ArgumentOutOfRangeException(nameof(size), $"output size {size} must be positive");
        if (srcWidth <= 0 || srcHwc.Length % (srcWidth * 3) != 0)
            throw new ArgumentException($"source of {srcHwc.Length} bytes is not whole rows of width {srcWidth}", nameof(srcHwc));
        int srcHeight = srcHwc.Length / (srcWidth * 3);
        if (crop.Size <= 0 || crop.X < 0 || crop.Y < 0 || (long)crop.X + crop.Size > srcWidth || (long)crop.Y + crop.Size > srcHeight)
            throw new ArgumentOutOfRangeException(nameof(crop), $"crop {crop} is not inside the {srcWidth}x{srcHeight} image");
        if (dstHwc.Length < size * size * 3)
            throw new ArgumentException($"destination holds {dstHwc.Length} bytes, {size * size * 3} needed", nameof(dstHwc));
        // Sums reach S²·255 per channel; keeping both sides under 2^15 keeps every product far inside 64 bits.
        if (crop.Size > 1 << 15 || size > 1 << 15)
            throw new ArgumentOutOfRangeException(nameof(size), "crop and output sides are limited to 32768");
        long s = crop.Size, n = size;
        long total = s * s; // Σ wx·wy over an output's footprint: Σ_i wx(i) = S along each axis
        long half = total / 2;
        int stride = srcWidth * 3;
        for (int oy = 0; oy < size; oy++)
        {
            // Output row oy covers [oy·S, (oy+1)·S) units; source row i covers [i·N, (i+1)·N).
            long y0 = oy * s, y1 = y0 + s;
            int iy0 = (int)(y0 / n), iy1 = (int)((y1 + n - 1) / n);
            for (int ox = 0; ox < size; ox++)
            {
                long x0 = ox * s, x1 = x0 + s;
                int ix0 = (int)(x0 / n), ix1 = (int)((x1 + n - 1) / n);
                long r = 0, g = 0, b = 0;
                for (int iy = iy0; iy < iy1; iy++)
                {
                    long wy = Math.Min(y1, (iy + 1) * n) - Math.Max(y0, iy * n);
                    int row = (crop.Y + iy) * stride + crop.X * 3;
                    long rr = 0, gg = 0, bb = 0;
                    for (int ix = ix0; ix < ix1; ix++)
                    {
                        long wx = Math.Min(x1, (ix + 1) * n) - Math.Max(x0, ix * n);
                        int p = row + ix * 3;
                        rr += wx * srcHwc[p];
                        gg += wx * srcHwc[p + 1];
                        bb += wx * srcHwc[p + 2];
                    }
                    r += wy * rr;
                    g += wy * gg;
                    b += wy * bb;
                }
                int d = (oy * size + ox) * 3;
                dstHwc[d] = (byte)((r + half) / total);
                dstHwc[d + 1] = (byte)((g + half) / total);
                dstHwc[d + 2] = (byte)((b + half) / total);
            }
        }
    }
}
