using QanaEdge.Model.Packaging;

namespace QanaEdge.Model.Tests;

public sealed class SigningTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("qana-sign").FullName;
    private static readonly byte[] Model = PackageWriter.ToBytes(SmallPackages.Build());
    private static readonly byte[] Update = PackageWriter.ToBytes(SmallPackages.ReadoutUpdate());

    public void Dispose() => Directory.Delete(_dir, true);

    private (SigningKey Key, TrustStore Trust) KeyAndTrust(SignerRole role, string name)
    {
        var key = SigningKey.Generate(role);
        string trustDir = Path.Combine(_dir, "trust-" + name);
        Directory.CreateDirectory(trustDir);
        key.Save(Path.Combine(trustDir, name));
        File.Delete(Path.Combine(trustDir, name + ".key"));
        return (key, TrustStore.Load(trustDir));
    }

    /// <summary>
    /// A file that reports no size and never ends (a device; a pipe reports none either) is read up to the package limit
    /// and refused. Verifying /dev/zero used to read until the runtime's largest array and throw an
    /// OutOfMemoryException out of <see cref="PackageVerifier.Verify(string, TrustStore)"/>: `qana verify` failed with
    /// an internal error after taking gigabytes.
    /// </summary>
    [Fact]
    public void AFileWithoutAnEndIsReadUpToTheLimit()
    {
        if (!File.Exists("/dev/zero")) return;
        var (_, trust) = KeyAndTrust(SignerRole.Vendor, "vendor");
        VerificationResult r = PackageVerifier.Verify("/dev/zero", trust);
        Assert.Equal(VerificationStatus.Corrupt, r.Status);
        Assert.Equal($"corrupt: '/dev/zero': more than {PackageLimits.MaxFileBytes} bytes, over the package limit", r.Reason);
        var e = Assert.Throws<PackageFormatException>(() => PackageReader.Load("/dev/zero"));
        Assert.Contains("over the package limit", e.Message);
    }

    [Fact]
    public void VendorSignedModel_IsValid()
    {
        var (key, trust) = KeyAndTrust(SignerRole.Vendor, "vendor");
        byte[] signed = PackageSigner.Sign(Model, key);
        Assert.Equal(Model.Length + PackageFormat.SignatureBlockSize, signed.Length);
        VerificationResult r = PackageVerifier.Verify(signed, trust);
        Assert.Equal(VerificationStatus.Valid, r.Status);
        Assert.NotNull(r.Package);
        Assert.Equal(SignerRole.Vendor, r.Package!.Signature!.Role);
        // Signed packages still load as packages.
        RoundTripTests.AssertSame(SmallPackages.Build(), PackageReader.Load(signed));
    }

    [Fact]
    public void LearnerSignedReadoutUpdate_IsValid_VendorMaySignItToo()
    {
        var (learner, trust) = KeyAndTrust(SignerRole.Learner, "learner");
        Assert.Equal(VerificationStatus.Valid, PackageVerifier.Verify(PackageSigner.Sign(Update, learner), trust).Status);
        var (vendor, vendorTrust) = KeyAndTrust(SignerRole.Vendor, "vendor");
        Assert.Equal(VerificationStatus.Valid, PackageVerifier.Verify(PackageSigner.Sign(Update, vendor), vendorTrust).Status);
    }

    [Fact]
    public void LearnerMayNotSignAModel()
    {
        var (learner, trust) = KeyAndTrust(SignerRole.Learner, "learner");
        Assert.Throws<SignatureRefusedException>(() => PackageSigner.Sign(Model, learner));
        // Even when signed with a tool that skips the rule, verification refuses it.
        VerificationResult r = PackageVerifier.Verify(PackageSigner.SignUnchecked(Model, learner), trust);
        Assert.Equal(VerificationStatus.RoleNotAllowed, r.Status);
        Assert.StartsWith("role not allowed", r.Reason);
    }

    [Fact]
    public void KeyTrustedAsLearner_CannotClaimVendor()
    {
        var vendor = SigningKey.Generate(SignerRole.Vendor);
        string dir = Path.Combine(_dir, "demoted");
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "k.pub"), new TrustedKey { Role = SignerRole.Learner, SubjectPublicKeyInfo = vendor.PublicKey.SubjectPublicKeyInfo }.ToText());
        VerificationResult r = PackageVerifier.Verify(PackageSigner.Sign(Update, vendor), TrustStore.Load(dir));
        Assert.Equal(VerificationStatus.RoleNotAllowed, r.Status);
    }

    [Fact]
    public void Unsigned_UnknownSigner()
    {
        var (_, trust) = KeyAndTrust(SignerRole.Vendor, "vendor");
        Assert.Equal(VerificationStatus.Unsigned, PackageVerifier.Verify(Model, trust).Status);
        using var stranger = SigningKey.Generate(SignerRole.Vendor);
        VerificationResult r = PackageVerifier.Verify(PackageSigner.Sign(Model, stranger), trust);
        Assert.Equal(VerificationStatus.UnknownSigner, r.Status);
    }

    [Fact]
    public void OnlyATrustedSignatureGetsAPackageLoaded()
    {
        var (key, trust) = KeyAndTrust(SignerRole.Vendor, "vendor");
        using var stranger = SigningKey.Generate(SignerRole.Vendor);
        // A well-formed layout around content that would not load: what decides is who sent it.
        byte[] invalid = PackageBytes.EditJson(Model, j => PackageBytes.Node(j, "pw")["op"] = "fft");
        Assert.Equal(VerificationStatus.Unsigned, PackageVerifier.Verify(invalid, trust).Status);
        VerificationResult unknown = PackageVerifier.Verify(PackageSigner.SignUnchecked(invalid, stranger), trust);
        Assert.Equal(VerificationStatus.UnknownSigner, unknown.Status);
        Assert.Null(unknown.Package);
        VerificationResult trusted = PackageVerifier.Verify(PackageSigner.SignUnchecked(invalid, key), trust);
        Assert.Equal(VerificationStatus.Corrupt, trusted.Status);
        Assert.Contains("unknown op 'fft'", trusted.Reason);

        // A hostile unsigned payload costs a hash, not the 131 MB its references name.
        byte[] hostile = ValidationTests.RepeatedReference("head", "weights");
        long before = GC.GetAllocatedBytesForCurrentThread();
        Assert.Equal(VerificationStatus.Unsigned, PackageVerifier.Verify(hostile, trust).Status);
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 1 << 20);
    }

    [Fact]
    public void Tampering()
    {
        var (key, trust) = KeyAndTrust(SignerRole.Vendor, "vendor");
        byte[] signed = PackageSigner.Sign(Model, key);

        // A changed byte with the checksum left alone: corrupt.
        byte[] flipped = (byte[])signed.Clone();
        flipped[200] ^= 1;
        Assert.Equal(VerificationStatus.Corrupt, PackageVerifier.Verify(flipped, trust).Status);

        // A changed weight with the checksum repaired: the signature catches it.
        byte[] rehashed = (byte[])signed.Clone();
        rehashed[Model.Length - 40] ^= 1;
        PackageBytes.FixChecksum(rehashed);
        Assert.Equal(VerificationStatus.BadSignature, PackageVerifier.Verify(rehashed, trust).Status);

        // A changed signature byte, or the role claim swapped: bad signature.
        byte[] badSig = (byte[])signed.Clone();
        badSig[^5] ^= 0x40;
        Assert.Equal(VerificationStatus.BadSignature, PackageVerifier.Verify(badSig, trust).Status);
        byte[] roleSwap = (byte[])signed.Clone();
        roleSwap[Model.Length + 12] = (byte)SignerRole.Learner;
        Assert.Equal(VerificationStatus.BadSignature, PackageVerifier.Verify(roleSwap, trust).Status);

        // Truncated into the signature block: corrupt.
        Assert.Equal(VerificationStatus.Corrupt, PackageVerifier.Verify(signed.AsSpan(0, signed.Length - 10), trust).Status);
    }

    [Fact]
    public void Resigning_ReplacesTheSignature()
    {
        var (a, _) = KeyAndTrust(SignerRole.Vendor, "a");
        var (b, trustB) = KeyAndTrust(SignerRole.Vendor, "b");
        byte[] twice = PackageSigner.Sign(PackageSigner.Sign(Model, a), b);
        Assert.Equal(Model.Length + PackageFormat.SignatureBlockSize, twice.Length);
        Assert.Equal(VerificationStatus.Valid, PackageVerifier.Verify(twice, trustB).Status);
    }

    [Fact]
    public void KeyFiles_RoundTrip_PrivateKeyIsOwnerOnly()
    {
        using var key = SigningKey.Generate(SignerRole.Learner);
        var (priv, pub) = key.Save(Path.Combine(_dir, "dev"));
        if (!OperatingSystem.IsWindows())
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(priv));
        using var loaded = SigningKey.Load(priv);
        Assert.Equal(SignerRole.Learner, loaded.Role);
        Assert.Equal(key.PublicKey.KeyIdHex, loaded.PublicKey.KeyIdHex);
        Assert.Equal(key.PublicKey.KeyIdHex, TrustedKey.Load(pub).KeyIdHex);
        Assert.Throws<KeyFileException>(() => key.Save(Path.Combine(_dir, "dev")));
        Assert.Equal(["dev.key", "dev.pub"], Directory.GetFiles(_dir, "dev*").Select(Path.GetFileName).Order(StringComparer.Ordinal));
    }

    /// <summary>
    /// A key's folder is flushed once both files are in place, so a power cut cannot take back a key that has signed
    /// something; a failed flush is refused in one line naming the folder, with both files left whole for the next start.
    /// </summary>
    [Fact]
    public void A_saved_key_has_its_folder_flushed_after_both_files_are_in_place()
    {
        string prefix = Path.Combine(_dir, "learner");
        using var key = SigningKey.Generate(SignerRole.Learner);
        var flushed = new List<(string Folder, bool KeyThere, bool PubThere)>();
        key.Save(prefix, folder => flushed.Add((folder, File.Exists(prefix + ".key"), File.Exists(prefix + ".pub"))));
        Assert.Equal([(_dir, true, true)], flushed);

        string other = Path.Combine(_dir, "unflushed");
        var e = Assert.Throws<KeyFileException>(() => key.Save(other, _ => throw new IOException("errno 5")));
        Assert.Contains($"its folder '{_dir}' could not be flushed", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        using var loaded = SigningKey.Load(other + ".key");
        Assert.Equal(key.PublicKey.KeyIdHex, TrustedKey.Load(other + ".pub").KeyIdHex);
    }

    /// <summary>
    /// When the public half cannot be written, no key is left behind without it (which would also refuse the retry:
    /// keys are never overwritten), and the error names the file that failed; once it can be written, the retry works.
    /// </summary>
    [Fact]
    public void A_key_whose_public_half_cannot_be_written_is_not_kept()
    {
        string prefix = Path.Combine(_dir, "pair");
        Directory.CreateDirectory(prefix + ".pub");
        using var key = SigningKey.Generate(SignerRole.Vendor);
        var e = Assert.Throws<KeyFileException>(() => key.Save(prefix));
        Assert.StartsWith($"cannot write '{prefix}.pub'", e.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(prefix + ".key"));

        Directory.Delete(prefix + ".pub");
        var (priv, pub) = key.Save(prefix);
        Assert.Equal(key.PublicKey.KeyIdHex, TrustedKey.Load(pub).KeyIdHex);
        using var loaded = SigningKey.Load(priv);
        Assert.Equal(key.PublicKey.KeyIdHex, loaded.PublicKey.KeyIdHex);
    }

    /// <summary>
    /// A leftover temporary file from a save cut short (power cut, full disk) is neither taken for a key nor allowed to
    /// lend the new key its permissions.
    /// </summary>
    [Fact]
    public void A_leftover_temporary_key_file_is_replaced_with_an_owner_only_one()
    {
        string prefix = Path.Combine(_dir, "cut");
        File.WriteAllText(prefix + ".key.tmp", "half a key");
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(prefix + ".key.tmp", (UnixFileMode)0b110_100_100);
        using var key = SigningKey.Generate(SignerRole.Learner);

        var (priv, _) = key.Save(prefix);

        if (!OperatingSystem.IsWindows())
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(priv));
        Assert.False(File.Exists(prefix + ".key.tmp"));
        using var loaded = SigningKey.Load(priv);
        Assert.Equal(key.PublicKey.KeyIdHex, loaded.PublicKey.KeyIdHex);
    }

    [Fact]
    public void MalformedKeyFiles_AreKeyFileExceptions()
    {
        string p = Path.Combine(_dir, "bad.pub");
        File.WriteAllText(p, "hello");
        Assert.Throws<KeyFileException>(() => TrustedKey.Load(p));
        File.WriteAllText(p, "qana-public-key v1\nrole: vendor\npublic: AAAA\n");
        Assert.Throws<KeyFileException>(() => TrustedKey.Load(p));
        File.WriteAllText(p, "qana-public-key v1\nrole: admin\npublic: AAAA\n");
        Assert.Throws<KeyFileException>(() => TrustedKey.Load(p));
        File.WriteAllText(p, "qana-signing-key v1\nrole: vendor\nprivate: !!\n");
        Assert.Throws<KeyFileException>(() => SigningKey.Load(p));
        Assert.Throws<KeyFileException>(() => SigningKey.Load(Path.Combine(_dir, "missing.key")));
        Assert.Throws<KeyFileException>(() => TrustStore.Load(Path.Combine(_dir, "no-such-dir")));
    }
}
