using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Formats;
using SixLabors.ImageSharp.PixelFormats;

namespace QanaEdge.Imaging.Tests;

/// <summary>Real HAM10000 JPEGs and images encoded from them in memory.</summary>
internal static class Samples
{
    private static readonly Lazy<string> DataDir = new(() =>
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (!File.Exists(Path.Combine(dir.FullName, "QanaEdge.sln"))) continue;
            // <repo>/../shared in a clone; a worktree nested one level deeper finds it further up.
            for (var up = dir.Parent; up is not null; up = up.Parent)
            {
                string data = Path.Combine(up.FullName, "shared", "data", "ham10000");
                if (Directory.Exists(data)) return data;
            }
            throw new DirectoryNotFoundException($"shared/data/ham10000 not found beside or above {dir.FullName}");
        }
        throw new DirectoryNotFoundException("repository root (QanaEdge.sln) not found above " + AppContext.BaseDirectory);
    });

    public static string ImagesDir => Path.Combine(DataDir.Value, "images");

    /// <summary>The first <paramref name="count"/> JPEG paths in name order (stable across machines).</summary>
    public static string[] JpegPaths(int count) =>
        Directory.GetFiles(ImagesDir, "*.jpg").Order(StringComparer.Ordinal).Take(count).ToArray();

    public static byte[] Jpeg(int index = 0) => File.ReadAllBytes(JpegPaths(index + 1)[index]);

    public static string Fixture(string name) => Path.Combine(AppContext.BaseDirectory, "Fixtures", name);

    public static byte[] Encode<TPixel>(Image<TPixel> image, IImageEncoder encoder)
        where TPixel : unmanaged, IPixel<TPixel>
    {
        using var ms = new MemoryStream();
        image.Save(ms, encoder);
        return ms.ToArray();
    }

    /// <summary>Pixels of an image as HWC RGB (alpha ignored).</summary>
    public static byte[] Rgb(Image<Rgb24> image)
    {
        var data = new byte[image.Width * image.Height * 3];
        image.CopyPixelDataTo(data);
        return data;
    }

    public static Image<Rgb24> LoadRgb(byte[] file) => Image.Load<Rgb24>(file);

    public static double MeanAbsDiff(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b)
    {
        Assert.Equal(a.Length, b.Length);
        long sum = 0;
        for (int i = 0; i < a.Length; i++) sum += Math.Abs(a[i] - b[i]);
        return (double)sum / a.Length;
    }
}
