using QanaEdge.Model;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Formats.Png;
using SixLabors.ImageSharp.PixelFormats;

namespace QanaEdge.Imaging;

/// <summary>Renders a Grad-CAM map over its image (for <c>qana classify --saliency</c>) and writes PNGs.</summary>
public static class SaliencyOverlay
{
    /// <summary>Opacity of the heat colours over the image.</summary>
    public const double Opacity = 0.45;

    /// <summary>
    /// A copy of <paramref name="image"/> with the map, bilinearly upsampled over its region and normalised
    /// to its maximum, blended in as a blue→green→yellow→red heat scale, and the chosen crop outlined in white.
    /// Without a map only the crop is drawn.
    /// </summary>
    public static RgbImage Render(RgbImage image, SaliencyMap? map, CropBox crop)
    {
        ArgumentNullException.ThrowIfNull(image);
        byte[] px = (byte[])image.Pixels.Clone();
        int w = image.Width;
        if (map is not null)
        {
            float max = map.Values.Max();
            CropBox r = map.Region;
            for (int y = r.Y; y < r.Y + r.Size && y < image.Height; y++)
            for (int x = r.X; x < r.X + r.Size && x < w; x++)
            {
                double v = max > 0 ? Sample(map, (x - r.X + 0.5) / r.Size * map.Width - 0.5, (y - r.Y + 0.5) / r.Size * map.Height - 0.5) / max : 0;
                (byte hr, byte hg, byte hb) = Heat(v);
                int o = (y * w + x) * 3;
                px[o] = Blend(px[o], hr);
                px[o + 1] = Blend(px[o + 1], hg);
                px[o + 2] = Blend(px[o + 2], hb);
            }
        }
        int t = Math.Max(1, Math.Min(image.Width, image.Height) / 150); // outline thickness
        for (int i = 0; i < crop.Size; i++)
        for (int k = 0; k < t; k++)
        {
            Put(px, image, crop.X + i, crop.Y + k);
            Put(px, image, crop.X + i, crop.Y + crop.Size - 1 - k);
            Put(px, image, crop.X + k, crop.Y + i);
            Put(px, image, crop.X + crop.Size - 1 - k, crop.Y + i);
        }
        return new RgbImage(image.Width, image.Height, px);
    }

    /// <summary>Writes an image as PNG, whole (<see cref="WholeFile.Write"/>: temporary file, then rename). The temporary
    /// file is removed when the write fails: the hand-rolled version left "OUT.png.tmp-PID" behind when, say, the target
    /// name was taken by a folder.</summary>
    public static void SavePng(RgbImage image, string path) =>
        WholeFile.Write(Path.GetFullPath(path), EncodePng(image), WholeFileOptions.UserOutput);

    /// <summary>The image as PNG file bytes.</summary>
    public static byte[] EncodePng(RgbImage image)
    {
        ArgumentNullException.ThrowIfNull(image);
        using Image<Rgb24> png = Image.LoadPixelData<Rgb24>(image.Pixels, image.Width, image.Height);
        using var stream = new MemoryStream();
        png.Save(stream, new PngEncoder());
        return stream.ToArray();
    }

    private static double Sample(SaliencyMap map, double fx, double fy)
    {
        fx = Math.Clamp(fx, 0, map.Width - 1);
        fy = Math.Clamp(fy, 0, map.Height - 1);
        int x0 = (int)fx, y0 = (int)fy, x1 = Math.Min(x0 + 1, map.Width - 1), y1 = Math.Min(y0 + 1, map.Height - 1);
        double ax = fx - x0, ay = fy - y0;
        double top = map[x0, y0] * (1 - ax) + map[x1, y0] * ax;
        double bottom = map[x0, y1] * (1 - ax) + map[x1, y1] * ax;
        return top * (1 - ay) + bottom * ay;
    }

    private static (byte, byte, byte) Heat(double v)
    {
        v = Math.Clamp(v, 0, 1);
        // Piecewise linear: 0 blue, 1/3 green, 2/3 yellow, 1 red.
        double r = v < 1 / 3.0 ? 0 : v < 2 / 3.0 ? (v - 1 / 3.0) * 3 : 1;
        double g = v < 1 / 3.0 ? v * 3 : v < 2 / 3.0 ? 1 : (1 - v) * 3;
        double b = v < 1 / 3.0 ? 1 - v * 3 : 0;
        return ((byte)(r * 255), (byte)(g * 255), (byte)(b * 255));
    }

    private static byte Blend(byte under, byte over) => (byte)Math.Round(under * (1 - Opacity) + over * Opacity);

    private static void Put(byte[] px, RgbImage image, int x, int y)
    {
        if ((uint)x >= (uint)image.Width || (uint)y >= (uint)image.Height) return;
        int o = (y * image.Width + x) * 3;
        px[o] = px[o + 1] = px[o + 2] = 255;
    }
}
