namespace QanaEdge.Imaging;

/// <summary>
/// A decoded image: <see cref="Width"/> × <see cref="Height"/> pixels, 8-bit RGB, row-major HWC
/// (pixel (x, y) channel c at <c>(y·Width + x)·3 + c</c>). The only pixel type the pipeline uses after decoding.
/// </summary>
public sealed class RgbImage
{
    public RgbImage(int width, int height, byte[] pixels)
    {
        ArgumentNullException.ThrowIfNull(pixels);
        if (width <= 0 || height <= 0)
            throw new ArgumentOutOfRangeException(nameof(width), $"image size {width}x{height} must be positive");
        if ((long)width * height * 3 != pixels.LongLength)
            throw new ArgumentException($"{width}x{height} RGB needs {(long)width * height * 3} bytes, got {pixels.LongLength}", nameof(pixels));
        Width = width;
        Height = height;
        Pixels = pixels;
    }

    public int Width { get; }
    public int Height { get; }
    /// <summary>HWC RGB bytes, length Width·Height·3.</summary>
    public byte[] Pixels { get; }

    /// <summary>True when <paramref name="box"/> lies entirely inside the image.</summary>
    public bool Contains(CropBox box) =>
        box.Size > 0 && box.X >= 0 && box.Y >= 0 && (long)box.X + box.Size <= Width && (long)box.Y + box.Size <= Height;
}

/// <summary>A square region of an image: top-left corner (<see cref="X"/>, <see cref="Y"/>) and side <see cref="Size"/>, in pixels.</summary>
public readonly record struct CropBox(int X, int Y, int Size)
{
    /// <summary>The largest square centred in a <paramref name="width"/> × <paramref name="height"/> image
    /// (odd leftovers go to the right/bottom margin).</summary>
    public static CropBox CenteredSquare(int width, int height)
    {
        if (width <= 0 || height <= 0)
            throw new ArgumentOutOfRangeException(nameof(width), $"image size {width}x{height} must be positive");
        int side = Math.Min(width, height);
        return new CropBox((width - side) / 2, (height - side) / 2, side);
    }

    public override string ToString() => $"{Size}x{Size}+{X}+{Y}";
}
