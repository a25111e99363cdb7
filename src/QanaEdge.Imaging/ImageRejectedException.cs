namespace QanaEdge.Imaging;

/// <summary>Why an image file was refused. Stable names: they are stored with quarantined captures and printed by the CLI.</summary>
public enum RejectReason
{
    /// <summary>The file has no bytes.</summary>
    Empty = 1,
    /// <summary>The header is that of an accepted format, but the data ends early or is damaged so that it cannot be decoded.</summary>
    Truncated = 2,
    /// <summary>No image signature we know: text, an archive, random bytes.</summary>
    NotAnImage = 3,
    /// <summary>The file, its dimensions, its pixel count or the memory its decoding needs exceed the limits.</summary>
    TooLarge = 4,
    /// <summary>A real image in a format or variant we do not accept (GIF, WebP, HEIC, BigTIFF, an unsupported TIFF colour model...).</summary>
    Unsupported = 5,
    /// <summary>Decoded, but (almost) every pixel is black: lens cap, dead sensor, fully transparent image.</summary>
    AllBlack = 6,
    /// <summary>Decoded, but (almost) every pixel is blown out to white.</summary>
    Saturated = 7,
}

/// <summary>The one exception <see cref="ImageDecoder.Decode(ReadOnlySpan{byte}, DecodeLimits?)"/> throws: a bad image with its reason.</summary>
public sealed class ImageRejectedException : Exception
{
    public ImageRejectedException(RejectReason reason, string message)
        : base(message) => Reason = reason;

    public ImageRejectedException(RejectReason reason, string message, Exception inner)
        : base(message, inner) => Reason = reason;

    public RejectReason Reason { get; }

    /// <summary>The reason as a lower-case code for JSON and logs, e.g. <c>all_black</c>.</summary>
    public string ReasonCode => Code(Reason);

    public static string Code(RejectReason reason) => reason switch
    {
        RejectReason.Empty => "empty",
        RejectReason.Truncated => "truncated",
        RejectReason.NotAnImage => "not_an_image",
        RejectReason.TooLarge => "too_large",
        RejectReason.Unsupported => "unsupported",
        RejectReason.AllBlack => "all_black",
        RejectReason.Saturated => "saturated",
        _ => "unknown",
    };
}
