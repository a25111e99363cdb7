using System.Buffers.Binary;

namespace QanaEdge.Model.Packaging;

/// <summary>
/// Appends a signature block to a package. Block (112 bytes, little-endian):
/// <code>
///  0  4  "QSIG"
///  4  4  block version (1)
///  8  4  algorithm (1 = ECDSA P-256, SHA-256)
/// 12  4  signer role (1 vendor, 2 learner)
/// 16 32  key id = SHA-256(SubjectPublicKeyInfo)
/// 48 64  signature, IEEE P1363 r‖s
/// </code>
/// The signature covers the package up to and including its checksum, then the block's first 48 bytes
/// (so the role and key id cannot be swapped). An existing signature is replaced.
/// </summary>
public static class PackageSigner
{
    /// <exception cref="PackageFormatException">The package is not valid.</exception>
    /// <exception cref="SignatureRefusedException">The key's role may not sign this kind of package.</exception>
    public static byte[] Sign(ReadOnlySpan<byte> package, SigningKey key)
    {
        ModelPackage loaded = PackageReader.Load(package);
        if (!PackageSignature.MaySign(key.Role, loaded.Manifest.Kind))
            throw new SignatureRefusedException(
                $"a {PackageSignature.RoleName(key.Role)} key may not sign a package of kind '{KindName(loaded.Manifest.Kind)}'");
        return SignUnchecked(package, key);
    }

    /// <summary>Signs without the role rule, so tests can build the packages verification must refuse.</summary>
    internal static byte[] SignUnchecked(ReadOnlySpan<byte> package, SigningKey key)
    {
        var layout = PackageReader.ReadLayout(package);
        int signed = layout.SignedLength;
        var result = new byte[signed + PackageFormat.SignatureBlockSize];
        package[..signed].CopyTo(result);
        Span<byte> block = result.AsSpan(signed);
        PackageFormat.SignatureMagic.CopyTo(block);
        BinaryPrimitives.WriteUInt32LittleEndian(block[4..], PackageFormat.SignatureVersion);
        BinaryPrimitives.WriteUInt32LittleEndian(block[8..], PackageFormat.SignatureAlgorithmEcdsaP256Sha256);
        BinaryPrimitives.WriteUInt32LittleEndian(block[12..], (uint)key.Role);
        key.PublicKey.KeyId.CopyTo(block[16..]);
        byte[] signature = key.SignData(result.AsSpan(0, signed + PackageFormat.SignatureSignedPrefix));
        signature.CopyTo(block[PackageFormat.SignatureSignedPrefix..]);
        return result;
    }

    public static string KindName(PackageKind kind) => kind == PackageKind.ReadoutUpdate ? "readout-update" : "model";
}

/// <summary>A signer's role does not allow signing the package it was asked to sign.</summary>
public sealed class SignatureRefusedException(string message) : Exception(message);
