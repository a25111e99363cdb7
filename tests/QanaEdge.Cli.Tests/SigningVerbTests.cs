using QanaEdge.Model.Packaging;
using QanaEdge.Model.Tests;

namespace QanaEdge.Cli.Tests;

/// <summary>keygen → sign → verify through the CLI, with tampering, unknown and wrong-role signers.</summary>
public sealed class SigningVerbTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("qana-cli-sign").FullName;
    private readonly string _trust;
    private readonly string _keys;

    public SigningVerbTests()
    {
        _trust = Directory.CreateDirectory(Path.Combine(_dir, "trust")).FullName;
        _keys = Directory.CreateDirectory(Path.Combine(_dir, "keys")).FullName;
    }

    public void Dispose() => Directory.Delete(_dir, true);

    private string Keygen(string role, string name)
    {
        CliResult r = Qana.Run("keygen", "--role", role, "--out", Path.Combine(_keys, name));
        Assert.Equal(0, r.Code);
        File.Copy(Path.Combine(_keys, name + ".pub"), Path.Combine(_trust, name + ".pub"));
        return Path.Combine(_keys, name + ".key");
    }

    private string Write(string name, byte[] bytes)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    [Fact]
    public void Keygen_WritesAnOwnerOnlyPrivateKey_AndRefusesToOverwrite()
    {
        string key = Keygen("vendor", "v");
        if (!OperatingSystem.IsWindows())
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(key));
        Assert.StartsWith("qana-public-key v1\nrole: vendor\n", File.ReadAllText(Path.Combine(_keys, "v.pub")));
        Qana.Run("keygen", "--role", "learner", "--out", Path.Combine(_keys, "v")).AssertOneLineError(1, "already exists");
    }

    /// <summary>A prefix that ends in a folder separator names a folder, not a prefix: it used to write the hidden files
    /// DIR/.key and DIR/.pub.</summary>
    [Fact]
    public void Keygen_RefusesAPrefixThatIsAFolder()
    {
        Qana.Run("keygen", "--role", "vendor", "--out", _keys + Path.DirectorySeparatorChar).AssertOneLineError(1, "folder");
        Assert.Empty(Directory.GetFileSystemEntries(_keys));
    }

    /// <summary>
    /// sign --out naming the --key file (by another spelling of its path too, or with --key a link to it) is bad usage
    /// and leaves the key as it was: the signed package was written over the private key, which was then lost
    /// ("signed KEY", exit 0).
    /// </summary>
    [Fact]
    public void Sign_refuses_an_output_that_is_the_private_key()
    {
        string key = Keygen("vendor", "v");
        byte[] keyBytes = File.ReadAllBytes(key);
        string model = Write("m.qana", PackageWriter.ToBytes(SmallPackages.Build()));
        string link = Path.Combine(_dir, "link.key");
        File.CreateSymbolicLink(link, key);
        foreach (string output in new[] { key, Path.Combine(_keys, ".", "v.key") })
        {
            Qana.Run("sign", "--key", key, model, "--out", output)
                .AssertOneLineError(2, $"--out '{output}' is the --key file; the signed package would replace the private key");
            Assert.Equal(keyBytes, File.ReadAllBytes(key));
        }
        Qana.Run("sign", "--key", link, model, "--out", key).AssertOneLineError(2, "is the --key file");
        Assert.Equal(keyBytes, File.ReadAllBytes(key));
        Assert.Equal(0, Qana.Run("sign", "--key", key, model).Code);   // in place, as before
    }

    [Fact]
    public void VendorSignsModel_VerifyAccepts_TamperingIsRefused()
    {
        string vendor = Keygen("vendor", "vendor");
        string model = Write("m.qana", PackageWriter.ToBytes(SmallPackages.Build()));
        string signed = Path.Combine(_dir, "signed.qana");

        Assert.Equal(0, Qana.Run("sign", "--key", vendor, model, "--out", signed).Code);
        CliResult ok = Qana.Run("verify", "--trust", _trust, signed);
        Assert.Equal(0, ok.Code);
        Assert.StartsWith("valid: model 'qana-small-test'", ok.Out);
        Assert.Contains("signature    vendor key", Qana.Run("inspect", signed).Out);

        Qana.Run("verify", "--trust", _trust, model).AssertOneLineError(1, "refused: unsigned");

        byte[] bytes = File.ReadAllBytes(signed);
        bytes[150] ^= 1;
        Qana.Run("verify", "--trust", _trust, Write("flipped.qana", bytes)).AssertOneLineError(1, "refused: corrupt");

        // Changed weight with a repaired checksum: only the signature can tell.
        bytes = File.ReadAllBytes(signed);
        bytes[bytes.Length - PackageFormat.SignatureBlockSize - 40] ^= 1;
        PackageBytes.FixChecksum(bytes);
        Qana.Run("verify", "--trust", _trust, Write("tampered.qana", bytes)).AssertOneLineError(1, "refused: bad signature");
    }

    [Fact]
    public void SignInPlace_ThenUnknownSigner()
    {
        string stranger = Path.Combine(_keys, "stranger");
        Assert.Equal(0, Qana.Run("keygen", "--role", "vendor", "--out", stranger).Code);
        string model = Write("m.qana", PackageWriter.ToBytes(SmallPackages.Build()));
        Assert.Equal(0, Qana.Run("sign", "--key", stranger + ".key", model).Code);
        Assert.NotNull(PackageReader.Load(model).Signature);
        Qana.Run("verify", "--trust", _trust, model).AssertOneLineError(1, "refused: unknown signer");
    }

    [Fact]
    public void Learner_SignsReadoutUpdates_NotModels()
    {
        string learner = Keygen("learner", "learner");
        string update = Write("u.qana", PackageWriter.ToBytes(SmallPackages.ReadoutUpdate()));
        Assert.Equal(0, Qana.Run("sign", "--key", learner, update).Code);
        Assert.Equal(0, Qana.Run("verify", "--trust", _trust, update).Code);

        string model = Write("m.qana", PackageWriter.ToBytes(SmallPackages.Build()));
        Qana.Run("sign", "--key", learner, model).AssertOneLineError(1, "a learner key may not sign a package of kind 'model'");
    }

    [Fact]
    public void KeyDemotedInTheTrustStore_RoleNotAllowed()
    {
        string vendor = Keygen("vendor", "v");
        string model = Write("m.qana", PackageWriter.ToBytes(SmallPackages.Build()));
        Assert.Equal(0, Qana.Run("sign", "--key", vendor, model).Code);
        string pub = Path.Combine(_trust, "v.pub");
        File.WriteAllText(pub, File.ReadAllText(pub).Replace("role: vendor", "role: learner", StringComparison.Ordinal));
        Qana.Run("verify", "--trust", _trust, model).AssertOneLineError(1, "refused: role not allowed");
    }

    [Fact]
    public void BadKeyAndTrustFolder_OneLineExit1()
    {
        string model = Write("m.qana", PackageWriter.ToBytes(SmallPackages.Build()));
        Qana.Run("sign", "--key", Write("junk.key", "junk"u8.ToArray()), model).AssertOneLineError(1, "junk.key");
        Qana.Run("verify", "--trust", Path.Combine(_dir, "nowhere"), model).AssertOneLineError(1, "trust directory");
        File.WriteAllText(Path.Combine(_trust, "broken.pub"), "qana-public-key v1\nrole: vendor\npublic: AAAA\n");
        Qana.Run("verify", "--trust", _trust, model).AssertOneLineError(1, "broken.pub");
    }

    [Fact]
    public void Verify_OfAMissingPackage_SaysNotFound_NotCorrupt()
    {
        Keygen("vendor", "vendor");
        CliResult r = Qana.Run("verify", "--trust", _trust, Path.Combine(_dir, "missing.qana"));
        r.AssertOneLineError(1, "missing.qana' not found");
        Assert.DoesNotContain("corrupt", r.Err);
        // The same exit code and wording as inspect gives a missing package.
        CliResult inspect = Qana.Run("inspect", Path.Combine(_dir, "missing.qana"));
        Assert.Equal(inspect.Code, r.Code);
        Assert.Equal(inspect.Err, r.Err);
    }
}
