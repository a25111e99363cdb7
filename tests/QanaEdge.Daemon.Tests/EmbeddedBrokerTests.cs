using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using QanaEdge.Daemon.Messaging;
using QanaEdge.Daemon.Tests.Infrastructure;

namespace QanaEdge.Daemon.Tests;

/// <summary>
/// Who may connect to the embedded broker without naming itself, tried with Debian's mosquitto_sub, the client a user
/// watches results with: without -i it connects with an empty id over MQTT 3.1.1, which MQTTnet alone refuses.
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

    [Theory]
    [InlineData("mqttv311")]
    [InlineData("mqttv31")]
    public async Task An_MQTT3_client_with_no_id_is_taken(string protocol)
    {
        // MQTTnet alone refuses an MQTT 3.1.1 client with an empty id ("identifier rejected"); the broker's channel
        // wrapper assigns one. mosquitto_sub's MQTT 3.1 client makes up its own id.
        await using var broker = new EmbeddedBroker(TestEnv.FreeTcpPort(), NullLogger<EmbeddedBroker>.Instance);
        await broker.StartAsync();

        string debug = await MosquittoSubConnect(broker.Port, protocol);

        Assert.Contains("received CONNACK (0)", debug);
        Assert.Contains("received SUBACK", debug);
    }

    [Fact]
    public async Task Named_clients_are_untouched_and_two_unnamed_ones_get_different_ids()
    {
        await using var broker = new EmbeddedBroker(TestEnv.FreeTcpPort(), NullLogger<EmbeddedBroker>.Instance);
        await broker.StartAsync();

        string[] runs = await Task.WhenAll(MosquittoSubConnect(broker.Port, "mqttv5"), MosquittoSubConnect(broker.Port, "mqttv5"),
            MosquittoSubConnect(broker.Port, "mqttv311", "-i", "qana-watch"));

        string[] assigned = runs[..2].Select(r => System.Text.RegularExpressions.Regex.Match(r, @"Client (auto-[0-9a-f]{32}) received CONNACK").Groups[1].Value).ToArray();
        Assert.All(assigned, id => Assert.NotEqual("", id));
        Assert.NotEqual(assigned[0], assigned[1]);
        Assert.Contains("Client qana-watch received CONNACK (0)", runs[2]);
    }

    /// <summary>
    /// A connection whose fixed header declares a packet over <see cref="MqttLink.MaxPacketBytes"/> is closed as the header
    /// arrives, its length bytes sent one at a time: MQTTnet's server sized a buffer for the whole packet (up to MQTT's
    /// 256 MB) and waited for it, so before, this connection stayed open with nothing sent. The broker serves the next
    /// client as before.
    /// </summary>
    [Fact]
    public async Task A_packet_over_the_limit_closes_its_connection_as_its_header_arrives()
    {
        var log = new RecordingLogger<EmbeddedBroker>();
        await using var broker = new EmbeddedBroker(TestEnv.FreeTcpPort(), log);
        await broker.StartAsync();
        using TcpClient client = await ConnectRawAsync(broker.Port, "big");
        NetworkStream stream = client.GetStream();

        // PUBLISH at QoS 0 declaring 200,000,000 bytes after its fixed header: the variable byte integer 80 84 AF 5F.
        foreach (byte b in (byte[])[0x30, 0x80, 0x84, 0xAF, 0x5F])
        {
            await stream.WriteAsync(new[] { b });
            await Task.Delay(50);
        }
        var closed = new byte[1];
        int read;
        try { read = await stream.ReadAsync(closed).AsTask().WaitAsync(TimeSpan.FromSeconds(20)); }
        catch (IOException) { read = 0; }   // a reset is a close too
        Assert.Equal(0, read);
        Assert.Equal(1, log.Count($"sent a 200000005-byte packet, over the {MqttLink.MaxPacketBytes}-byte limit"));

        using TcpClient next = await ConnectRawAsync(broker.Port, "next");   // and the broker serves the next client
    }

    /// <summary>
    /// The broker looks for silent clients every 5 s instead of MQTTnet's 500 ms (a wake-up of its own twice a second
    /// at rest): one that announced a keep-alive of 1 s and sends nothing is still dropped, within 1.5 s and a look.
    /// </summary>
    [Fact]
    public async Task A_client_silent_past_its_keep_alive_is_dropped()
    {
        await using var broker = new EmbeddedBroker(TestEnv.FreeTcpPort(), NullLogger<EmbeddedBroker>.Instance);
        await broker.StartAsync();
        using TcpClient silent = await ConnectRawAsync(broker.Port, "silent", keepAliveSeconds: 1);

        // The broker closes the connection: the read ends with no byte (or the connection is reset).
        var end = new byte[1];
        int read;
        try { read = await silent.GetStream().ReadAsync(end).AsTask().WaitAsync(TimeSpan.FromSeconds(30)); }
        catch (IOException) { read = 0; }
        Assert.Equal(0, read);
    }

    /// <summary>A TCP connection that has sent an MQTT 3.1.1 CONNECT (clean session, keep-alive 60 s unless given) and had it accepted.</summary>
    private static async Task<TcpClient> ConnectRawAsync(int port, string clientId, byte keepAliveSeconds = 60)
    {
        var client = new TcpClient();
        await client.ConnectAsync(IPAddress.Loopback, port);
        byte[] id = System.Text.Encoding.ASCII.GetBytes(clientId);
        byte[] connect = [0x10, (byte)(12 + id.Length), 0, 4, .. "MQTT"u8, 4, 0x02, 0, keepAliveSeconds, 0, (byte)id.Length, .. id];
        await client.GetStream().WriteAsync(connect);
        byte[] connack = new byte[4];
        await client.GetStream().ReadExactlyAsync(connack).AsTask().WaitAsync(TimeSpan.FromSeconds(20));
        Assert.Equal([0x20, 2, 0, 0], connack);
        return client;
    }

    /// <summary>mosquitto_sub (with no client id unless <paramref name="extra"/> gives one), debug output on, leaving after one second; what it printed.</summary>
    private static async Task<string> MosquittoSubConnect(int port, string protocol, params string[] extra)
    {
        var psi = new ProcessStartInfo("mosquitto_sub") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in (string[])["-V", protocol, "-h", "127.0.0.1", "-p", port.ToString(), "-t", "qana/#", "-W", "1", "-d", .. extra])
            psi.ArgumentList.Add(a);
        using Process sub = Process.Start(psi)!;
        Task<string> stdout = sub.StandardOutput.ReadToEndAsync(), stderr = sub.StandardError.ReadToEndAsync();
        await sub.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(20));
        return await stdout + await stderr;
    }
}
