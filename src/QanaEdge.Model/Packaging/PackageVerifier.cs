namespace QanaEdge.Model.Packaging;

public enum VerificationStatus
{
    Valid = 0,
    /// <summary>No signature block.</summary>
    Unsigned,
    /// <summary>The signing key is not in the trust store.</summary>
    UnknownSigner,
    /// <summary>The signature does not match the content (tampered after signing, or forged).</summary>
    BadSignature,
    /// <summary>The signer's role may not sign this kind of package (a learner signing a full model).</summary>
    RoleNotAllowed,
    /// <summary>The package itself is malformed (checksum, structure, validation).</summary>
    Corrupt,
}

/// <summary>Outcome of <see cref="PackageVerifier.Verify"/>; <see cref="Reason"/> is one line.</summary>
public sealed class VerificationResult
{
    public required VerificationStatus Status { get; init; }
    public required string Reason { get; init; }
    /// <summary>The loaded package: set only once the signature has verified and the package loaded
    /// (valid, or a trusted role that may not sign this kind); null otherwise.</summary>
    public ModelPackage? Package { get; init; }
    /// <summary>The trusted key that signed it, when known.</summary>
    public TrustedKey? Signer { get; init; }
    public bool IsValid => Status == VerificationStatus.Valid;
}

/// <summary>
/// Decides whether a device may accept a package: its layout must hold (header, lengths, checksum,
/// signature block), it must carry a signature by a key in the trust store, the signature must match,
/// the role the trusted key file grants must be the role the block claims, the package must then load
/// (valid), and the role must be allowed to sign the package's kind (vendor: models and readout updates;
/// learner: readout updates only). Nothing but the layout is parsed before the signature has verified.
/// </summary>
public static class PackageVerifier
{
    public static VerificationResult Verify(ReadOnlySpan<byte> package, TrustStore trust)
    {
        // The layout (header, lengths, checksum, signature block) is cheap to check; the full load parses
        // the JSON and copies the blob's arrays. Update payloads come from the network, so the signature
        // is checked first and only a package from a trusted key is loaded.
        PackageReader.Layout layout;
        try
        {
            layout = PackageReader.ReadLayout(package);
        }
        catch (PackageFormatException e)
        {
            return Corrupt(e);
        }
        PackageSignature? signature = layout.Signature;
        if (signature is null)
            return new VerificationResult { Status = VerificationStatus.Unsigned, Reason = "unsigned: the package carries no signature" };

        TrustedKey? key = trust.Find(signature.KeyId);
        if (key is null)
            return new VerificationResult
            {
                Status = VerificationStatus.UnknownSigner,
                Reason = $"unknown signer: key {signature.KeyIdHex[..16]} is not in the trust store",
            };

        if (!key.Verify(package[..(layout.SignedLength + PackageFormat.SignatureSignedPrefix)],
                        package.Slice(layout.SignedLength + PackageFormat.SignatureSignedPrefix, 64)))
            return new VerificationResult
            {
                Status = VerificationStatus.BadSignature, Signer = key,
                Reason = $"bad signature: the content does not match the signature of key {key.KeyIdHex[..16]}",
            };

        if (key.Role != signature.Role)
            return new VerificationResult
            {
                Status = VerificationStatus.RoleNotAllowed, Signer = key,
                Reason = $"role not allowed: key {key.KeyIdHex[..16]} is trusted as {PackageSignature.RoleName(key.Role)} but signed as {PackageSignature.RoleName(signature.Role)}",
            };

        ModelPackage loaded;
        try
        {
            loaded = PackageReader.Load(package, layout);
        }
        catch (PackageFormatException e)
        {
            return Corrupt(e);
        }
        if (!PackageSignature.MaySign(key.Role, loaded.Manifest.Kind))
            return new VerificationResult
            {
                Status = VerificationStatus.RoleNotAllowed, Package = loaded, Signer = key,
                Reason = $"role not allowed: a {PackageSignature.RoleName(key.Role)} key may not sign a package of kind '{PackageSigner.KindName(loaded.Manifest.Kind)}'",
            };

        return new VerificationResult
        {
            Status = VerificationStatus.Valid, Package = loaded, Signer = key,
            Reason = $"valid: {PackageSigner.KindName(loaded.Manifest.Kind)} '{loaded.Manifest.ModelId}' {loaded.Manifest.Version} signed by {PackageSignature.RoleName(key.Role)} key {key.KeyIdHex[..16]}",
        };
    }

    private static VerificationResult Corrupt(PackageFormatException e) =>
        new() { Status = VerificationStatus.Corrupt, Reason = $"corrupt: {e.Message}" };

    public static VerificationResult Verify(string path, TrustStore trust)
    {
        if (ExpectedPath.FileProblem(path) is { } problem)
            return new VerificationResult { Status = VerificationStatus.Corrupt, Reason = $"'{path}' {problem}" };
        byte[] bytes;
        try
        {
            bytes = PackageReader.ReadFile(path);
        }
        catch (PackageFormatException e)
        {
            return Corrupt(e);
        }
        return Verify(bytes, trust);
    }
}
