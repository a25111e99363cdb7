namespace QanaEdge.Imaging;

/// <summary>
/// Limits enforced before and during decoding. The defaults admit any dermatoscope or phone camera frame
/// (up to 24 megapixels, e.g. 6000×4000) and refuse anything bigger before a pixel is decoded.
/// </summary>
public sealed record DecodeLimits
{
    /// <summary>The defaults described in docs/preprocessing.md.</summary>
    public static DecodeLimits Default { get; } = new();

    /// <summary>Largest file accepted, in bytes: room for an uncompressed 8-bit RGB BMP or TIFF of <see cref="MaxPixels"/> (72 MB).</summary>
    public long MaxFileBytes { get; init; } = 80L << 20;
    /// <summary>Largest width or height, in pixels.</summary>
    public int MaxDimension { get; init; } = 8192;
    /// <summary>Largest pixel count (width × height).</summary>
    public long MaxPixels { get; init; } = 24_000_000;
    /// <summary>
    /// Most bytes the image library may hold at once while decoding one image (live buffers, counted by
    /// our allocator). Measured peak for JPEG and PNG is about 4.0 bytes per pixel plus a few MiB of
    /// working buffers (docs/preprocessing.md), so the default leaves room for <see cref="MaxPixels"/> and refuses
    /// decompression bombs whose header lies about their content.
    /// </summary>
    public long MaxDecoderBytes { get; init; } = 160L << 20;

    internal void Validate()
    {
        if (MaxFileBytes <= 0 || MaxDimension <= 0 || MaxPixels <= 0 || MaxDecoderBytes <= 0)
            throw new ArgumentOutOfRangeException(nameof(DecodeLimits), "every decode limit must be positive");
    }
}
