using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Microsoft.Extensions.Configuration;
using QanaEdge.Daemon.Configuration;
using QanaEdge.Daemon.Messaging;
using QanaEdge.Daemon.Tests.Infrastructure;

namespace QanaEdge.Daemon.Tests;

/// <summary>
/// TLS files the daemon cannot use (real certificates and keys written to disk): the start refuses them with a line
/// naming the setting and the file, and the link, should one go bad after the start, logs each attempt that fails on it
/// and goes on trying. Before, only their existence was checked; MQTTnet read them when the link's options were built,
/// outside the loop's catch, and the loop ended without a word while the daemon ran on, never connected.
/// </summary>
public sealed class MqttTlsFilesTests : IDisposable
{
    private readonly string _dir = TestEnv.TempDir("tls");

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    private static X509Certificate2 SelfSigned(string name)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
        return request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));
    }

    private string Write(string name, string text)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllText(path, text);
        return path;
    }

    private string Write(string name, byte[] bytes)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private static string KeyPem(X509Certificate2 certificate) => certificate.GetECDsaPrivateKey()!.ExportPkcs8PrivateKeyPem();

    private IReadOnlyList<string> Errors(Dictionary<string, string?> mqtt)
    {
        var settings = new Dictionary<string, string?>
        {
            ["Qana:Inbox"] = Path.Combine(_dir, "inbox"), ["Qana:StateDir"] = Path.Combine(_dir, "state"), ["Qana:Mqtt:Host"] = "broker",
        };
        foreach (var (key, value) in mqtt) settings["Qana:Mqtt:" + key] = value;
        try
        {
            OptionsLoader.Load(new ConfigurationBuilder().AddInMemoryCollection(settings).Build());
            return [];
        }
        catch (ConfigurationException e) { return e.Errors; }
    }

    [Fact]
    public void Usable_TLS_files_pass_and_unusable_ones_are_refused_naming_the_setting_and_the_file()
    {
        using X509Certificate2 client = SelfSigned("qanad-devtls"), other = SelfSigned("someone-else");
        string cert = Write("client.crt", client.ExportCertificatePem());
        string key = Write("client.key", KeyPem(client));
        string ca = Write("ca.crt", other.ExportCertificatePem());
        string p12 = Write("client.p12", client.Export(X509ContentType.Pkcs12, "right"));
        Assert.Empty(Errors(new() { ["CaFile"] = ca, ["ClientCertificate"] = cert, ["ClientKey"] = key }));
        Assert.Empty(Errors(new() { ["ClientCertificate"] = p12, ["Username"] = "u", ["Password"] = "right" }));

        string notKey = Write("notkey.key", "this is not a key\n");
        Assert.Equal([$"Qana:Mqtt:ClientKey: {notKey} holds no PEM private key of the certificate in {cert}"],
            Errors(new() { ["ClientCertificate"] = cert, ["ClientKey"] = notKey }).Select(Cut));

        string otherKey = Write("other.key", KeyPem(other));
        Assert.Equal([$"Qana:Mqtt:ClientKey: {otherKey} holds no PEM private key of the certificate in {cert}"],
            Errors(new() { ["ClientCertificate"] = cert, ["ClientKey"] = otherKey }).Select(Cut));

        string der = Write("ca.der", other.RawData);
        Assert.Equal([$"Qana:Mqtt:CaFile: {der} holds no PEM certificate (\"-----BEGIN CERTIFICATE-----\"); a DER file converts with: openssl x509 -inform der -in FILE -out FILE.pem"],
            Errors(new() { ["CaFile"] = der }));

        Assert.Equal([$"Qana:Mqtt:ClientCertificate: {p12} cannot be opened as PKCS#12 with Qana:Mqtt:Password (a wrong password, or not a PKCS#12 file; a PEM certificate needs Qana:Mqtt:ClientKey)"],
            Errors(new() { ["ClientCertificate"] = p12, ["Username"] = "u", ["Password"] = "wrong" }).Select(Cut));

        // A privileged process reads any file whatever its mode: the test then has nothing unreadable to show.
        if (!Environment.IsPrivilegedProcess && !OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(key, UnixFileMode.None);
            Assert.Equal([$"Qana:Mqtt:ClientKey: {key} cannot be read by this process"],
                Errors(new() { ["ClientCertificate"] = cert, ["ClientKey"] = key }).Select(Cut));
        }
    }

    /// <summary>The message after the reason's first ':' comes from .NET and varies with its version: cut there.</summary>
    private static string Cut(string error)
    {
        int reason = error.IndexOf(": ", error.IndexOf(": ", StringComparison.Ordinal) + 2, StringComparison.Ordinal);
        return reason < 0 ? error : error[..reason];
    }

    [Fact]
    public void The_daemon_refuses_to_start_on_a_key_that_is_not_one()
    {
        using X509Certificate2 client = SelfSigned("qanad-devtlsproc");
        string cert = Write("client.crt", client.ExportCertificatePem());
        string notKey = Write("client.key", "this is not a key\n");
        using var child = new ChildProcess([
            $"--Qana:Inbox={Path.Combine(_dir, "inbox")}", $"--Qana:StateDir={Path.Combine(_dir, "state")}", "--Qana:DeviceId=devtlsproc",
            "--Qana:Mqtt:Host=127.0.0.1", $"--Qana:Mqtt:Port={TestEnv.FreeTcpPort()}", $"--Qana:Model={TestModel.Path_}",
            $"--Qana:Mqtt:ClientCertificate={cert}", $"--Qana:Mqtt:ClientKey={notKey}",
        ]);
        Assert.True(child.WaitForExit(TimeSpan.FromSeconds(60)), "qanad did not exit");
        for (int i = 0; i < 50 && !child.Output.Any(l => l.StartsWith("qanad:", StringComparison.Ordinal)); i++) Thread.Sleep(100);
        string output = string.Join('\n', child.Output);
        Assert.True(child.ExitCode == 2, $"exit {child.ExitCode}: {output}");
        Assert.Contains($"qanad: configuration: Qana:Mqtt:ClientKey: {notKey} holds no PEM private key of the certificate in {cert}", output);
        Assert.DoesNotContain("Exception", output);
    }

    /// <summary>
    /// A PKCS#12 file the link cannot open (here a wrong password, as a file replaced after the start's check would be):
    /// each connect attempt fails on it, is logged with the setting and the file, and is tried again; the link stops
    /// cleanly. Before, the loop's task failed at once, nothing was logged, and the stop threw the loop's exception.
    /// </summary>
    [Fact]
    public async Task A_TLS_file_the_link_cannot_open_fails_each_attempt_with_its_name_and_the_link_goes_on_trying()
    {
        using X509Certificate2 client = SelfSigned("qanad-devtlslink");
        string p12 = Write("client.p12", client.Export(X509ContentType.Pkcs12, "right"));
        using var broker = new MosquittoBroker();
        var options = new MqttOptions
        {
            Host = "127.0.0.1", Port = broker.Port, ClientId = "qanad-devtlslink", ClientCertificate = p12, Username = "u", Password = "wrong",
            ReconnectMinSeconds = 0.01, ReconnectMaxSeconds = 0.01,
        };
        var log = new RecordingLogger<MqttLink>();
        var link = new MqttLink(options, "devtlslink", log);
        link.Start(() => Encoding.UTF8.GetBytes("""{"state":"online"}"""));
        await TestEnv.WaitUntil(() => log.Count("failed (10x") == 1, TimeSpan.FromSeconds(60), "the 10th failed attempt",
            () => string.Join('\n', log.Lines.Select(l => $"{l.Level}: {l.Message}")));
        Assert.Contains(log.Lines, l => l.Message.Contains($"failed (1x; reported at 1, 10, 100 ...): Qana:Mqtt:ClientCertificate: {p12} cannot be opened as PKCS#12", StringComparison.Ordinal));
        Assert.False(link.IsConnected);
        await link.DisposeAsync();
    }
}
