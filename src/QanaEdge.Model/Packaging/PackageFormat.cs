namespace QanaEdge.Model.Packaging;

/// <summary>
/// Byte layout of a <c>.qana</c> file (docs/model-format.md has the full description). All integers are
/// little-endian.
/// <code>
///   0   8  magic 89 'Q' 'A' 'N' 'A' 0D 0A 1A
///   8   4  format version (1)
///  12   4  flags (0; reserved)
///  16   4  JSON length J
///  20   4  blob length B
///  24   J  manifest + graph, UTF-8 JSON
///  24+J B  blob: weights, biases, tables
///  ..  32  SHA-256 of every byte before it
///  ..  112 optional signature block ("QSIG", see <see cref="PackageSigner"/>)
/// </code>
/// </summary>
public static class PackageFormat
{
    /// <summary>The high-bit first byte catches 7-bit transports, CR LF catches line-ending conversion,
    /// 1A stops a DOS `type` (the PNG trick).</summary>
    public static ReadOnlySpan<byte> Magic => [0x89, (byte)'Q', (byte)'A', (byte)'N', (byte)'A', 0x0D, 0x0A, 0x1A];

    public const int Version = 1;
    public const int HeaderSize = 24;
    public const int ChecksumSize = 32;

    /// <summary>"QSIG", version, algorithm, role, key id (32), signature (64).</summary>
    public const int SignatureBlockSize = 4 + 4 + 4 + 4 + 32 + 64;
    public static ReadOnlySpan<byte> SignatureMagic => "QSIG"u8;
    public const int SignatureVersion = 1;
    /// <summary>ECDSA over NIST P-256 with SHA-256, signature as IEEE P1363 r‖s (64 bytes).</summary>
    public const int SignatureAlgorithmEcdsaP256Sha256 = 1;
    /// <summary>Bytes of the signature block covered by the signature (everything but the signature).</summary>
    public const int SignatureSignedPrefix = SignatureBlockSize - 64;
}
