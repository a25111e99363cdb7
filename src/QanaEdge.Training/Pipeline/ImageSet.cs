using QanaEdge.Imaging;
using QanaEdge.Model.Packaging;
using QanaEdge.Training.Data;
using QanaEdge.Training.Engine;

namespace QanaEdge.Training.Pipeline;

/// <summary>
/// Preprocessed images held in memory: each decoded once, centre-cropped to a square and area-resampled to
/// S×S, stored as HWC RGB bytes (6,880 × 64×64×3 ≈ 85 MB for HAM10000). A training set may also keep a
/// larger view of the same centred crop (<see cref="ZoomPixels"/>, <see cref="ZoomSize"/>²) from which the
/// zoom augmentation cuts smaller squares, so a zoomed view is resampled from real detail, not upsampled.
/// </summary>
public sealed class ImageSet
{
    public int Size { get; }
    public byte[][] Pixels { get; }
    public int[] Labels { get; }
    public string[] Ids { get; }
    /// <summary>The centred crop at <see cref="ZoomSize"/>² (null when the set was loaded without one).</summary>
    public byte[][]? ZoomPixels { get; }
    public int ZoomSize { get; }

    public ImageSet(int size, byte[][] pixels, int[] labels, string[] ids, byte[][]? zoomPixels = null, int zoomSize = 0)
    {
        if (pixels.Length != labels.Length || ids.Length != labels.Length) throw new ArgumentException("one label and id per image");
        if (zoomPixels is not null && (zoomPixels.Length != pixels.Length || zoomSize < size))
            throw new ArgumentException("the zoom view needs one image per image, at least as large as the input");
        Size = size; Pixels = pixels; Labels = labels; Ids = ids;
        ZoomPixels = zoomPixels; ZoomSize = zoomPixels is null ? 0 : zoomSize;
    }

    public int Count => Labels.Length;

    public int[] ClassCounts(int classes)
    {
        var counts = new int[classes];
        foreach (int l in Labels) counts[l]++;
        return counts;
    }

    /// <summary>Loads and preprocesses rows in parallel (on <see cref="Par.Threads"/> workers) through the device's own
    /// <see cref="Preprocessor.PrepareCentered(RgbImage, int, Span{byte})"/> (the network is trained on exactly the
    /// pixels the device gives it; packages record <see cref="InputCrop.Centre"/>). Files that cannot be decoded
    /// are one <see cref="DatasetException"/> that counts them and names the first few.
    /// With <paramref name="zoomSize"/> &gt; <paramref name="size"/> the same centred crop is also kept at zoomSize².</summary>
    public static ImageSet Load(IReadOnlyList<Ham10000Row> rows, int size, int zoomSize = 0)
    {
        bool zoom = zoomSize > size;
        var pixels = new byte[rows.Count][];
        var zoomPixels = zoom ? new byte[rows.Count][] : null;
        var failures = new ImageFiles.Failures(rows.Count, "images");
        // As many workers as --threads allows (Par.Threads), like every other loop of a run: the results are the same
        // either way, but a run told to keep to N cores must not take them all while it decodes.
        Parallel.For(0, rows.Count, new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, Par.Threads) }, i =>
        {
            RgbImage image;
            try { image = ImageFiles.Decode(rows[i].ImagePath); }
            catch (DatasetException e) { failures.Add(i, e.Message); return; }
            pixels[i] = new byte[size * size * 3];
            Preprocessor.PrepareCentered(image, size, pixels[i]);
            if (zoomPixels is not null)
            {
                zoomPixels[i] = new byte[zoomSize * zoomSize * 3];
                Preprocessor.PrepareCentered(image, zoomSize, zoomPixels[i]);
            }
        });
        failures.ThrowIfAny();
        return new ImageSet(size, pixels, rows.Select(r => r.ClassIndex).ToArray(), rows.Select(r => r.ImageId).ToArray(),
            zoomPixels, zoom ? zoomSize : 0);
    }
}
