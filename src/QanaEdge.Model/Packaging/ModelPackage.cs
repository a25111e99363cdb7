using QanaEdge.Model.Graph;

namespace QanaEdge.Model.Packaging;

/// <summary>A loaded (or freshly converted) model: manifest plus integer graph. Immutable once built.</summary>
public sealed class ModelPackage
{
    public required ModelManifest Manifest { get; init; }
    public required ModelGraph Graph { get; init; }

    /// <summary>The signature block found after the checksum when the package was loaded (not yet
    /// verified: see <see cref="PackageVerifier"/>); null for unsigned or in-memory packages.</summary>
    public PackageSignature? Signature { get; init; }

    /// <summary>SHA-256 (lower-case hex) of the package bytes up to the checksum, as stored in the file;
    /// empty for packages built in memory. Identifies the exact content, independent of any signature.</summary>
    public string ContentSha256 { get; init; } = "";
}
