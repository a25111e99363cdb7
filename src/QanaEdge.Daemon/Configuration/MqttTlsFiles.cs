using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace QanaEdge.Daemon.Configuration;

/// <summary>A TLS file of the MQTT options that cannot be used: the setting that names it, the file, and why.</summary>
public sealed class MqttTlsFileException(string key, string file, string problem)
    : Exception($"Qana:Mqtt:{key}: {file} {problem}")
{
    /// <summary>The setting below Qana:Mqtt, e.g. "ClientKey".</summary>
    public string Key { get; } = key;
    public string File { get; } = file;
}

/// <summary>
/// Reads and checks the TLS material the MQTT options name: the CA file (PEM), and the client certificate with its key
/// (PEM certificate and PEM key, or one PKCS#12 file opened with Qana:Mqtt:Password). The options loader loads it at
/// start, so that an unreadable file, a DER file, a wrong password or a key of another certificate stops the start
/// with a line naming the setting; the link loads it again when it builds its connection options, in its first connect
/// attempt, and at each later attempt until they could be built (they are then kept: a renewed certificate is taken at
/// the next start).
/// </summary>
public static class MqttTlsFiles
{
    /// <summary>The CA certificates to trust (null: the system trust store) and the client certificate with its key (null: none).</summary>
    public static (X509Certificate2Collection? TrustChain, X509Certificate2? ClientCertificate) Load(MqttOptions options) =>
        (LoadTrustChain(options.CaFile), LoadClientCertificate(options));

    private static X509Certificate2Collection? LoadTrustChain(string? caFile)
    {
        if (string.IsNullOrEmpty(caFile)) return null;
        string pem = ReadText("CaFile", caFile);
        var chain = new X509Certificate2Collection();
        try { chain.ImportFromPem(pem); }
        catch (CryptographicException e) { throw new MqttTlsFileException("CaFile", caFile, $"holds a PEM certificate that cannot be read: {e.Message}"); }
        // ImportFromPem takes what it finds and finds nothing in a DER file: the broker's certificate then failed every
        // connect attempt as "untrusted", with no word of the file.
        if (chain.Count == 0)
            throw new MqttTlsFileException("CaFile", caFile, "holds no PEM certificate (\"-----BEGIN CERTIFICATE-----\"); a DER file converts with: openssl x509 -inform der -in FILE -out FILE.pem");
        return chain;
    }

    private static X509Certificate2? LoadClientCertificate(MqttOptions options)
    {
        if (string.IsNullOrEmpty(options.ClientCertificate)) return null;
        string certFile = options.ClientCertificate;
        if (string.IsNullOrEmpty(options.ClientKey))
        {
            byte[] pkcs12 = Read("ClientCertificate", certFile, File.ReadAllBytes);
            X509Certificate2 bundle;
            try { bundle = X509CertificateLoader.LoadPkcs12(pkcs12, options.Password); }
            catch (CryptographicException e)
            {
                throw new MqttTlsFileException("ClientCertificate", certFile,
                    $"cannot be opened as PKCS#12 with Qana:Mqtt:Password (a wrong password, or not a PKCS#12 file; a PEM certificate needs Qana:Mqtt:ClientKey): {e.Message}");
            }
            if (!bundle.HasPrivateKey)
            {
                bundle.Dispose();
                throw new MqttTlsFileException("ClientCertificate", certFile, "holds no private key (a PKCS#12 file must hold the certificate's key)");
            }
            return bundle;
        }

        string keyFile = options.ClientKey;
        string certPem = ReadText("ClientCertificate", certFile);
        string keyPem = ReadText("ClientKey", keyFile);
        // The certificate alone first, so that a bad certificate is not reported as a bad key.
        try { X509Certificate2.CreateFromPem(certPem).Dispose(); }
        catch (CryptographicException e) { throw new MqttTlsFileException("ClientCertificate", certFile, $"holds no PEM certificate that can be read: {e.Message}"); }
        try { return X509Certificate2.CreateFromPem(certPem, keyPem); }
        catch (Exception e) when (e is CryptographicException or ArgumentException)
        {
            throw new MqttTlsFileException("ClientKey", keyFile, $"holds no PEM private key of the certificate in {certFile}: {e.Message}");
        }
    }

    private static string ReadText(string key, string file) => Read(key, file, File.ReadAllText);

    private static T Read<T>(string key, string file, Func<string, T> read)
    {
        try { return read(file); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new MqttTlsFileException(key, file, $"cannot be read by this process: {e.Message}");
        }
    }
}
