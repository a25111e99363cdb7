namespace QanaEdge.Model.Packaging;

/// <summary>The public keys a device trusts: every <c>*.pub</c> file of one folder.</summary>
public sealed class TrustStore
{
    private readonly Dictionary<string, TrustedKey> _byId;

    public TrustStore(IEnumerable<TrustedKey> keys)
    {
        _byId = new Dictionary<string, TrustedKey>(StringComparer.Ordinal);
        foreach (TrustedKey key in keys)
        {
            if (_byId.TryGetValue(key.KeyIdHex, out TrustedKey? other) && other.Role != key.Role)
                throw new KeyFileException($"'{key.Source}' and '{other.Source}' hold the same key with different roles");
            _byId[key.KeyIdHex] = key;
        }
    }

    public IReadOnlyCollection<TrustedKey> Keys => _byId.Values;

    public static TrustStore Load(string directory)
    {
        if (ExpectedPath.FolderProblem(directory) is { } problem) throw new KeyFileException($"trust directory '{directory}' {problem}");
        string[] files = Directory.GetFiles(directory, "*.pub");
        Array.Sort(files, StringComparer.Ordinal);
        return new TrustStore(files.Select(TrustedKey.Load));
    }

    public TrustedKey? Find(ReadOnlySpan<byte> keyId) =>
        _byId.GetValueOrDefault(Convert.ToHexStringLower(keyId));
}
