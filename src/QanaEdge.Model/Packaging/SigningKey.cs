using System.Security.Cryptography;
using System.Text;

namespace QanaEdge.Model.Packaging;

/// <summary>A key file is missing, malformed, or holds a key of the wrong kind. One line, names the file.</summary>
public sealed class KeyFileException : Exception
{
    public KeyFileException(string message) : base(message) { }
    public KeyFileException(string message, Exception inner) : base(message, inner) { }
}

/// <summary>
/// A trusted public key: ECDSA P-256, with the role its owner may sign as. Text file <c>*.pub</c>:
/// <code>
/// qana-public-key v1
/// role: vendor
/// public: BASE64(SubjectPublicKeyInfo DER)
/// </code>
/// Its key id is SHA-256 of the SubjectPublicKeyInfo, the value a signature block names.
/// </summary>
public sealed class TrustedKey
{
    internal const string Header = "qana-public-key v1";

    public required SignerRole Role { get; init; }
    public required byte[] SubjectPublicKeyInfo { get; init; }
    public byte[] KeyId => SHA256.HashData(SubjectPublicKeyInfo);
    public string KeyIdHex => Convert.ToHexStringLower(KeyId);
    /// <summary>Where the key was read from (empty for keys made in memory).</summary>
    public string Source { get; init; } = "";

    public string ToText() =>
        $"{Header}\nrole: {PackageSignature.RoleName(Role)}\npublic: {Convert.ToBase64String(SubjectPublicKeyInfo)}\n";

    public static TrustedKey Load(string path)
    {
        string text = KeyText.Read(path);
        var fields = KeyText.Parse(text, Header, path);
        byte[] spki = KeyText.Base64(fields, "public", path);
        try
        {
            using var ecdsa = ECDsa.Create();
            ecdsa.ImportSubjectPublicKeyInfo(spki, out int read);
            if (read != spki.Length || ecdsa.KeySize != 256)
                throw new KeyFileException($"'{path}': not an ECDSA P-256 public key");
        }
        catch (CryptographicException e)
        {
            throw new KeyFileException($"'{path}': not an ECDSA P-256 public key ({KeyText.OneLine(e.Message)})", e);
        }
        return new TrustedKey { Role = KeyText.Role(fields, path), SubjectPublicKeyInfo = spki, Source = path };
    }

    internal bool Verify(ReadOnlySpan<byte> data, ReadOnlySpan<byte> signature)
    {
        using var ecdsa = ECDsa.Create();
        ecdsa.ImportSubjectPublicKeyInfo(SubjectPublicKeyInfo, out _);
        return ecdsa.VerifyData(data, signature, HashAlgorithmName.SHA256, DSASignatureFormat.IeeeP1363FixedFieldConcatenation);
    }
}

/// <summary>
/// A private signing key (ECDSA P-256) and its role. Text file <c>PREFIX.key</c>, created with mode 0600:
/// <code>
/// qana-signing-key v1
/// role: learner
/// private: BASE64(PKCS#8 DER)
/// </code>
/// </summary>
public sealed class SigningKey : IDisposable
{
    internal const string Header = "qana-signing-key v1";
    private readonly ECDsa _ecdsa;

    private SigningKey(ECDsa ecdsa, SignerRole role)
    {
        _ecdsa = ecdsa;
        Role = role;
        PublicKey = new TrustedKey { Role = role, SubjectPublicKeyInfo = ecdsa.ExportSubjectPublicKeyInfo() };
    }

    public SignerRole Role { get; }
    public TrustedKey PublicKey { get; }

    public static SigningKey Generate(SignerRole role)
    {
        if (!Enum.IsDefined(role)) throw new ArgumentOutOfRangeException(nameof(role));
        return new SigningKey(ECDsa.Create(ECCurve.NamedCurves.nistP256), role);
    }

    public static SigningKey Load(string path)
    {
        string text = KeyText.Read(path);
        var fields = KeyText.Parse(text, Header, path);
        byte[] pkcs8 = KeyText.Base64(fields, "private", path);
        SignerRole role = KeyText.Role(fields, path);
        var ecdsa = ECDsa.Create();
        try
        {
            ecdsa.ImportPkcs8PrivateKey(pkcs8, out int read);
            if (read != pkcs8.Length || ecdsa.KeySize != 256)
                throw new KeyFileException($"'{path}': not an ECDSA P-256 private key");
        }
        catch (Exception e) when (e is CryptographicException or KeyFileException)
        {
            ecdsa.Dispose();
            throw e as KeyFileException ?? new KeyFileException($"'{path}': not an ECDSA P-256 private key ({KeyText.OneLine(e.Message)})", e);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(pkcs8);
        }
        return new SigningKey(ecdsa, role);
    }

    /// <summary>
    /// Writes PREFIX.key (owner read/write only) and PREFIX.pub. Refuses to overwrite a key. Each file is written under
    /// a temporary name, flushed to disk and then renamed into place, so a full disk or a power cut leaves either no
    /// key or a whole one: a half-written key could never be loaded, and since keys are never overwritten it would
    /// have stopped the device's learning for good.
    /// </summary>
    /// <param name="prefix">The path of both files without their extension.</param>
    /// <param name="syncFolder">
    /// Flushes the folder once both files are in place (<see cref="WholeFileOptions.SyncFolder"/>), so that a power cut
    /// cannot take the key back after something was signed with it; the daemon passes its libc folder sync. A failed
    /// flush is a <see cref="KeyFileException"/> although both files are in place: the key is not to be used this run.
    /// </param>
    /// <returns>The two paths written.</returns>
    public (string PrivatePath, string PublicPath) Save(string prefix, Action<string>? syncFolder = null)
    {
        string keyPath = prefix + ".key", pubPath = prefix + ".pub";
        if (File.Exists(keyPath)) throw new KeyFileException($"'{keyPath}' already exists; keys are never overwritten");
        byte[] pkcs8 = _ecdsa.ExportPkcs8PrivateKey();
        byte[] text = Encoding.ASCII.GetBytes($"{Header}\nrole: {PackageSignature.RoleName(Role)}\nprivate: {Convert.ToBase64String(pkcs8)}\n");
        string writing = pubPath;
        try
        {
            // The public half first: when the key cannot follow, a public file alone is harmless and a retry replaces
            // it, where a key without its public half could not be given to a trust store and would block the retry
            // (keys are never overwritten).
            WholeFile.Write(pubPath, Encoding.ASCII.GetBytes(PublicKey.ToText()));
            writing = keyPath;
            // One flush after the second rename puts both names on the disk: they share the folder.
            WholeFile.Write(keyPath, text, syncFolder is null ? PrivateKeyFile : PrivateKeyFile with { SyncFolder = syncFolder });
        }
        catch (FolderSyncException e)
        {
            throw new KeyFileException(KeyText.OneLine(e.Message), e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new KeyFileException($"cannot write '{writing}': {KeyText.OneLine(e.Message)}", e);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(pkcs8);
            CryptographicOperations.ZeroMemory(text);
        }
        return (keyPath, pubPath);
    }

    /// <summary>A private key: owner-only from its first byte, never written over.</summary>
    private static readonly WholeFileOptions PrivateKeyFile = new() { OwnerOnly = true, Overwrite = false };

    internal byte[] SignData(ReadOnlySpan<byte> data) =>
        _ecdsa.SignData(data, HashAlgorithmName.SHA256, DSASignatureFormat.IeeeP1363FixedFieldConcatenation);

    public void Dispose() => _ecdsa.Dispose();
}

/// <summary>The shared "key: value" text form of key files.</summary>
internal static class KeyText
{
    private const int MaxKeyFileBytes = 16 * 1024;

    public static string Read(string path)
    {
        try
        {
            if (ExpectedPath.FileProblem(path) is { } problem) throw new KeyFileException($"key file '{path}' {problem}");
            var info = new FileInfo(path);
            if (info.Length > MaxKeyFileBytes) throw new KeyFileException($"'{path}' is too large to be a key file");
            return File.ReadAllText(path, Encoding.ASCII);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new KeyFileException($"cannot read '{path}': {OneLine(e.Message)}", e);
        }
    }

    public static Dictionary<string, string> Parse(string text, string header, string path)
    {
        string[] lines = text.Split('\n', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        if (lines.Length == 0 || lines[0] != header)
            throw new KeyFileException($"'{path}': not a key file of this kind (first line must be '{header}')");
        var fields = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (string line in lines.Skip(1))
        {
            int colon = line.IndexOf(':');
            if (colon <= 0) throw new KeyFileException($"'{path}': malformed line '{(line.Length > 40 ? line[..40] + "..." : line)}'");
            fields[line[..colon].Trim()] = line[(colon + 1)..].Trim();
        }
        return fields;
    }

    public static byte[] Base64(Dictionary<string, string> fields, string name, string path)
    {
        if (!fields.TryGetValue(name, out string? value)) throw new KeyFileException($"'{path}': field '{name}' missing");
        try { return Convert.FromBase64String(value); }
        catch (FormatException) { throw new KeyFileException($"'{path}': field '{name}' is not base64"); }
    }

    public static SignerRole Role(Dictionary<string, string> fields, string path)
    {
        if (!fields.TryGetValue("role", out string? value)) throw new KeyFileException($"'{path}': field 'role' missing");
        if (!PackageSignature.TryParseRole(value, out SignerRole role))
            throw new KeyFileException($"'{path}': role '{value}' is neither vendor nor learner");
        return role;
    }

    public static string OneLine(string message) => message.ReplaceLineEndings(" ");
}
