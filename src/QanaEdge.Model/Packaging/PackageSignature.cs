namespace QanaEdge.Model.Packaging;

/// <summary>Who may sign what. Stored in key files and in the signature block.</summary>
public enum SignerRole
{
    /// <summary>The manufacturer: may sign complete models and readout updates.</summary>
    Vendor = 1,
    /// <summary>A device's on-board learner: may sign only readout updates.</summary>
    Learner = 2,
}

/// <summary>The signature block of a package as read from the file (parsed, not yet verified).</summary>
public sealed class PackageSignature
{
    /// <summary>The role the signer claims; verification checks it against the trusted key file.</summary>
    public required SignerRole Role { get; init; }
    /// <summary>SHA-256 of the signer's public key (SubjectPublicKeyInfo DER).</summary>
    public required byte[] KeyId { get; init; }
    /// <summary>IEEE P1363 r‖s, 64 bytes.</summary>
    public required byte[] Signature { get; init; }

    public string KeyIdHex => Convert.ToHexStringLower(KeyId);

    public static string RoleName(SignerRole role) => role switch
    {
        SignerRole.Vendor => "vendor",
        SignerRole.Learner => "learner",
        _ => "unknown",
    };

    public static bool TryParseRole(string? text, out SignerRole role)
    {
        switch (text?.Trim().ToLowerInvariant())
        {
            case "vendor": role = SignerRole.Vendor; return true;
            case "learner": role = SignerRole.Learner; return true;
            default: role = default; return false;
        }
    }

    /// <summary>Whether a signer of <paramref name="role"/> may sign a package of <paramref name="kind"/>.</summary>
    public static bool MaySign(SignerRole role, PackageKind kind) => role switch
    {
        SignerRole.Vendor => kind is PackageKind.Model or PackageKind.ReadoutUpdate,
        SignerRole.Learner => kind == PackageKind.ReadoutUpdate,
        _ => false,
    };
}
