using QanaEdge.Imaging;
using QanaEdge.Model.Packaging;
using QanaEdge.Training.Data;

namespace QanaEdge.Training.Pipeline;

/// <summary>
/// Preprocessed images held in memory: each decoded once, centre-cropped to a square and area-resampled to
/// S×S, stored as HWC RGB bytes (6,880 × 64×64×3 ≈ 85 MB for HAM10000).
/// </summary>
public sealed class ImageSet
{
    public int Size { get; }
    public byte[][] Pixels { get; }
    public int[] Labels { get; }
    public string[] Ids { get; }

    public ImageSet(int size, byte[][] pixels, int[] labels, string[] ids)
    {
        if (pixels.Length != labels.Length || ids.Length != labels.Length) throw new ArgumentException("one label and id per image");
        Size = size; Pixels = pixels; Labels = labels; Ids = ids;
    }

    public int Count => Labels.Length;

    public int[] ClassCounts(int classes)
    {
        var counts = new int[classes];
        foreach (int l in Labels) counts[l]++;
        return counts;
    }

    /// <summary>Loads and preprocesses rows in parallel; a file that cannot be decoded is a <see cref="DatasetException"/>.</summary>
    public static ImageSet Load(IReadOnlyList<Ham10000Row> rows, int size)
    {
        var pixels = new byte[rows.Count][];
        Parallel.For(0, rows.Count, i => pixels[i] = Preprocess(rows[i].ImagePath, size));
        return new ImageSet(size, pixels, rows.Select(r => r.ClassIndex).ToArray(), rows.Select(r => r.ImageId).ToArray());
    }

    /// <summary>
    /// Decode → centred square crop → area resample to size×size → HWC bytes, through the device's own
    /// <see cref="Preprocessor.PrepareCentered(ReadOnlySpan{byte}, int, Span{byte}, DecodeLimits?)"/>: the network
    /// is trained on exactly the pixels the device will give it (packages record <see cref="InputCrop.Centre"/>).
    /// </summary>
    public static byte[] Preprocess(string path, int size)
    {
        byte[] bytes;
        try { bytes = File.ReadAllBytes(path); }
        catch (IOException e) { throw new DatasetException($"{path}: cannot read ({e.Message})", e); }
        var hwc = new byte[size * size * 3];
        try { Preprocessor.PrepareCentered(bytes, size, hwc); }
        catch (ImageRejectedException e) { throw new DatasetException($"{path}: {e.Message}", e); }
        return hwc;
    }
}
