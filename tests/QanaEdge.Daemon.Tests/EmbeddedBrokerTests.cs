using System.Diagnostics;
using Microsoft.Extensions.Logging.Abstractions;
using QanaEdge.Daemon.Messaging;
using QanaEdge.Daemon.Tests.Infrastructure;

namespace QanaEdge.Daemon.Tests;

/// <summary>
/// Who may connect to the embedded broker without naming itself, tried with Debian's mosquitto_sub, the client the
/// start banner and the docs tell a user to watch results with (with -i NAME, because of the second case here).
/// </summary>
public sealed class EmbeddedBrokerTests
{
    [Fact]
    public async Task An_MQTT5_client_with_no_id_is_assigned_one()
    {
        await using var broker = new EmbeddedBroker(TestEnv.FreeTcpPort(), NullLogger<EmbeddedBroker>.Instance);
        await broker.StartAsync();

        string debug = await MosquittoSubConnect(broker.Port, "mqttv5");

        Assert.Contains("received CONNACK (0)", debug);
        Assert.Matches(@"Client auto-[0-9a-f]{32} received CONNACK", debug);
    }

    [Fact]
    public async Task An_MQTT311_client_with_no_id_is_refused_with_identifier_rejected()
    {
        await using var broker = new EmbeddedBroker(TestEnv.FreeTcpPort(), NullLogger<EmbeddedBroker>.Instance);
        await broker.StartAsync();

        string debug = await MosquittoSubConnect(broker.Port, "mqttv311");

        Assert.Contains("received CONNACK (2)", debug); // 2: identifier rejected (MQTT 3.1.1 §3.2.2.3)
    }

    /// <summary>mosquitto_sub with no client id, debug output on, leaving after one second; what it printed.</summary>
    private static async Task<string> MosquittoSubConnect(int port, string protocol)
    {
        var psi = new ProcessStartInfo("mosquitto_sub") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in (string[])["-V", protocol, "-h", "127.0.0.1", "-p", port.ToString(), "-t", "qana/#", "-W", "1", "-d"])
            psi.ArgumentList.Add(a);
        using Process sub = Process.Start(psi)!;
        Task<string> stdout = sub.StandardOutput.ReadToEndAsync(), stderr = sub.StandardError.ReadToEndAsync();
        await sub.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(20));
        return await stdout + await stderr;
    }
}
