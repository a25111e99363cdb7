using System.Net;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging;
using MQTTnet.Adapter;
using MQTTnet.Diagnostics.Logger;
using MQTTnet.Formatter;
using MQTTnet.Packets;
using MQTTnet.Server;
using MQTTnet.Server.Internal.Adapter;

namespace QanaEdge.Daemon.Messaging;

/// <summary>
/// The broker used when no Qana:Mqtt:Host is configured: MQTTnet.Server on 127.0.0.1 only, so a stand-alone device
/// works out of the box (mosquitto_sub -h 127.0.0.1 sees results) and nothing is exposed on the network.
/// <para>
/// Its sessions, and the messages queued in them for subscribers that are offline, live in memory only. The
/// publisher deletes an outbox entry once this broker acknowledges it, subscribers or not, so whatever it held for an
/// offline persistent subscriber is gone when qanad stops or is killed. Delivery across restarts needs an external
/// broker with persistence (Qana:Mqtt:Host); the start log says so.
/// </para>
/// </summary>
public sealed class EmbeddedBroker(int port, ILogger<EmbeddedBroker> log) : IAsyncDisposable
{
    private MqttServer? _server;
    private long _oversized;

    public int Port => port;

    public async Task StartAsync()
    {
        MqttServerOptions options = new MqttServerOptionsBuilder()
            .WithDefaultEndpoint()
            .WithDefaultEndpointBoundIPAddress(IPAddress.Loopback)
            .WithDefaultEndpointBoundIPV6Address(IPAddress.None)
            .WithDefaultEndpointPort(port)
            .WithPersistentSessions()
            .Build();
        // Clients that send an empty client id expect the broker to assign one (mosquitto_sub does, unless given -i).
        // MQTTnet assigns one only to MQTT 5 clients (AssignedClientIdentifier, below); an MQTT 3.1.1 client, which
        // the protocol lets ask for one with a clean session (§3.1.3.1), it refuses with "identifier rejected". So the
        // TCP adapter is wrapped to fill in such a client's id as its CONNECT arrives (ClientIdAssigningAdapter).
        var tcp = new ClientIdAssigningAdapter(new MqttTcpServerAdapter());
        _server = new MqttServerFactory().CreateMqttServer(options, [tcp]);
        _server.ValidatingConnectionAsync += e =>
        {
            if (string.IsNullOrEmpty(e.ClientId)) e.AssignedClientIdentifier = NewClientId();
            return Task.CompletedTask;
        };
        // MQTTnet's server ignores the maximum packet size a client announces: the daemon's link asks for at most
        // MqttLink.MaxPacketBytes, and a larger message published here reached it whole, in memory, all the same. So it
        // is dropped here, for every subscriber (the 1st, 10th, 100th ... dropped are logged).
        _server.InterceptingPublishAsync += e =>
        {
            long bytes = e.ApplicationMessage.Payload.Length;
            if (bytes <= MqttLink.MaxPacketBytes) return Task.CompletedTask;
            e.ProcessPublish = false;
            if (Interlocked.Increment(ref _oversized) is var count && Hosting.Logging.IsReported(count))
                log.LogWarning("Embedded broker: a {Bytes}-byte message from {Client} on {Topic} dropped: over the {Max}-byte limit ({Count} so far; reported at 1, 10, 100 ...)",
                    bytes, e.ClientId, e.ApplicationMessage.Topic, MqttLink.MaxPacketBytes, count);
            return Task.CompletedTask;
        };
        await _server.StartAsync().ConfigureAwait(false);
        log.LogWarning("Embedded MQTT broker listening on 127.0.0.1:{Port}. Its sessions are in memory: results it acknowledged for a subscriber " +
            "that is offline are lost when qanad stops or is killed. For delivery across restarts set Qana:Mqtt:Host to a broker with persistence", port);
    }

    public async ValueTask DisposeAsync()
    {
        if (_server is null) return;
        await _server.StopAsync().ConfigureAwait(false);
        _server.Dispose();
    }

    private static string NewClientId() => "auto-" + Guid.NewGuid().ToString("N");

    /// <summary>MQTTnet's TCP listener, with each connection's channel wrapped in a <see cref="ClientIdAssigningChannel"/>.</summary>
    private sealed class ClientIdAssigningAdapter(IMqttServerAdapter inner) : IMqttServerAdapter
    {
        public Func<IMqttChannelAdapter, Task>? ClientHandler { get; set; }

        public Task StartAsync(MqttServerOptions options, IMqttNetLogger logger)
        {
            inner.ClientHandler = channel => ClientHandler is { } handler ? handler(new ClientIdAssigningChannel(channel)) : Task.CompletedTask;
            return inner.StartAsync(options, logger);
        }

        public Task StopAsync() => inner.StopAsync();

        public void Dispose() => inner.Dispose();
    }

    /// <summary>
    /// One client connection; the first packet, when it is an MQTT 3.1.x CONNECT with an empty client id and a clean
    /// session, gets an id assigned before the server sees it. With a persistent session an empty id stays refused, as
    /// MQTT 3.1.1 requires (§3.1.3.1: there would be no session to come back to). Everything else passes through.
    /// </summary>
    private sealed class ClientIdAssigningChannel(IMqttChannelAdapter inner) : IMqttChannelAdapter
    {
        private bool _connectSeen;

        public async Task<MqttPacket> ReceivePacketAsync(CancellationToken cancellationToken)
        {
            MqttPacket packet = await inner.ReceivePacketAsync(cancellationToken).ConfigureAwait(false);
            if (!_connectSeen && packet is MqttConnectPacket connect)
            {
                _connectSeen = true;
                if (string.IsNullOrEmpty(connect.ClientId) && connect.CleanSession && inner.PacketFormatterAdapter.ProtocolVersion != MqttProtocolVersion.V500)
                    connect.ClientId = NewClientId();
            }
            return packet;
        }

        public long BytesReceived => inner.BytesReceived;
        public long BytesSent => inner.BytesSent;
        public X509Certificate2 ClientCertificate => inner.ClientCertificate;
        public EndPoint RemoteEndPoint => inner.RemoteEndPoint;
        public EndPoint LocalEndPoint => inner.LocalEndPoint;
        public bool IsSecureConnection => inner.IsSecureConnection;
        public MqttPacketFormatterAdapter PacketFormatterAdapter => inner.PacketFormatterAdapter;
        public Task ConnectAsync(CancellationToken cancellationToken) => inner.ConnectAsync(cancellationToken);
        public Task DisconnectAsync(CancellationToken cancellationToken) => inner.DisconnectAsync(cancellationToken);
        public void ResetStatistics() => inner.ResetStatistics();
        public Task SendPacketAsync(MqttPacket packet, CancellationToken cancellationToken) => inner.SendPacketAsync(packet, cancellationToken);
        public void Dispose() => inner.Dispose();
    }
}
