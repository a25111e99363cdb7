using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging;
using MQTTnet.Adapter;
using MQTTnet.Diagnostics.Logger;
using MQTTnet.Formatter;
using MQTTnet.Implementations;
using MQTTnet.Packets;
using MQTTnet.Server;

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
        // The endpoint is this class's own listener (LoopbackListener), so the server's options name none.
        MqttServerOptions options = new MqttServerOptionsBuilder().WithPersistentSessions().Build();
        options.KeepAliveOptions.MonitorInterval = KeepAliveMonitorInterval;
        _server = new MqttServerFactory().CreateMqttServer(options, [new LoopbackListener(port, OnOversized)]);
        // Clients that send an empty client id expect the broker to assign one (mosquitto_sub does, unless given -i).
        // MQTTnet assigns one only to MQTT 5 clients (AssignedClientIdentifier, below); an MQTT 3.1.1 client, which
        // the protocol lets ask for one with a clean session (§3.1.3.1), it refuses with "identifier rejected". So each
        // connection's channel fills in such a client's id as its CONNECT arrives (ClientIdAssigningChannel).
        _server.ValidatingConnectionAsync += e =>
        {
            if (string.IsNullOrEmpty(e.ClientId)) e.AssignedClientIdentifier = NewClientId();
            return Task.CompletedTask;
        };
        await _server.StartAsync().ConfigureAwait(false);
        log.LogWarning("Embedded MQTT broker listening on 127.0.0.1:{Port}. Its sessions are in memory: results it acknowledged for a subscriber " +
            "that is offline are lost when qanad stops or is killed. For delivery across restarts set Qana:Mqtt:Host to a broker with persistence", port);
    }

    /// <summary>
    /// How often the broker looks for clients silent past 1.5 times their keep-alive (and drops them, publishing their
    /// will). MQTTnet's default, 500 ms, woke a thread of its own twice a second for as long as the daemon ran, a quarter
    /// of the daemon's wake-ups at rest once the link and the publisher stopped polling (docs/benchmarks.md). A silent
    /// client is dropped up to this much later; mosquitto's own look, Debian 12's 2.0.11, comes every few seconds too.
    /// </summary>
    public static readonly TimeSpan KeepAliveMonitorInterval = TimeSpan.FromSeconds(5);

    // MQTTnet's server ignores the maximum packet size a client announces (the daemon's link asks for at most
    // MqttLink.MaxPacketBytes: a larger message published here reached it whole), and takes any packet up to MQTT's
    // 256 MB into memory before anything can look at it. So the connection that sends a larger one is closed as its
    // fixed header arrives (PacketSizeLimitStream); the 1st, 10th, 100th ... are logged.
    private void OnOversized(EndPoint? client, long bytes)
    {
        if (Interlocked.Increment(ref _oversized) is var count && Hosting.Logging.IsReported(count))
            log.LogWarning("Embedded broker: connection from {Client} closed: it sent a {Bytes}-byte packet, over the {Max}-byte limit ({Count} so far; reported at 1, 10, 100 ...)",
                client, bytes, MqttLink.MaxPacketBytes, count);
    }

    public async ValueTask DisposeAsync()
    {
        if (_server is null) return;
        await _server.StopAsync().ConfigureAwait(false);
        _server.Dispose();
    }

    private static string NewClientId() => "auto-" + Guid.NewGuid().ToString("N");

    /// <summary>
    /// A TCP listener on 127.0.0.1 in place of MQTTnet's, which gives no way to look at a connection's bytes: each
    /// connection's stream is read through a <see cref="PacketSizeLimitStream"/>, and its channel wrapped in a
    /// <see cref="ClientIdAssigningChannel"/>. Otherwise as MQTTnet's own (MqttTcpServerListener): no Nagle delay, a
    /// channel adapter with the server's buffer sizes, the connection closed when the server is done with it.
    /// </summary>
    private sealed class LoopbackListener(int port, Action<EndPoint?, long> oversized) : IMqttServerAdapter
    {
        private readonly CancellationTokenSource _stop = new();
        private TcpListener? _listener;

        public Func<IMqttChannelAdapter, Task>? ClientHandler { get; set; }

        public Task StartAsync(MqttServerOptions options, IMqttNetLogger logger)
        {
            _listener = new TcpListener(IPAddress.Loopback, port);
            _listener.Start();
            _ = Task.Run(() => AcceptAsync(_listener, options, logger));
            return Task.CompletedTask;
        }

        private async Task AcceptAsync(TcpListener listener, MqttServerOptions options, IMqttNetLogger logger)
        {
            while (!_stop.IsCancellationRequested)
            {
                Socket socket;
                try { socket = await listener.AcceptSocketAsync(_stop.Token).ConfigureAwait(false); }
                catch (OperationCanceledException) { return; }
                catch (ObjectDisposedException) { return; }
                catch (SocketException) { continue; }   // a connection reset before it was accepted
                _ = Task.Run(() => ServeAsync(socket, options, logger));
            }
        }

        private async Task ServeAsync(Socket socket, MqttServerOptions options, IMqttNetLogger logger)
        {
            try
            {
                socket.NoDelay = true;
                EndPoint? remote = socket.RemoteEndPoint;
                await using var stream = new PacketSizeLimitStream(new NetworkStream(socket, ownsSocket: true), MqttLink.MaxPacketBytes, bytes => oversized(remote, bytes));
                if (ClientHandler is not { } handler) return;
                var channel = new MqttTcpChannel(stream, socket.LocalEndPoint!, remote!, null!);
                using var adapter = new MqttChannelAdapter(channel, new MqttPacketFormatterAdapter(new MqttBufferWriter(options.WriterBufferSize, options.WriterBufferSizeMax)), logger);
                await handler(new ClientIdAssigningChannel(adapter)).ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException) { }   // the client went, or was sent away
            finally { socket.Dispose(); }
        }

        public Task StopAsync()
        {
            _stop.Cancel();
            _listener?.Stop();
            return Task.CompletedTask;
        }

        public void Dispose()
        {
            _ = StopAsync();   // completes at once
            _stop.Dispose();
        }
    }

    /// <summary>
    /// One client connection; the first packet, when it is an MQTT 3.1.x CONNECT with an empty client id and a clean
    /// session, gets an id assigned before the server sees it. With a persistent session an empty id stays refused, as
    /// MQTT 3.1.1 requires (§3.1.3.1: there would be no session to come back to). Everything else passes through.
    /// </summary>
    private sealed class ClientIdAssigningChannel(IMqttChannelAdapter inner) : ForwardingChannelAdapter(inner)
    {
        private bool _connectSeen;

        public override async Task<MqttPacket> ReceivePacketAsync(CancellationToken cancellationToken)
        {
            MqttPacket packet = await Inner.ReceivePacketAsync(cancellationToken).ConfigureAwait(false);
            if (!_connectSeen && packet is MqttConnectPacket connect)
            {
                _connectSeen = true;
                if (string.IsNullOrEmpty(connect.ClientId) && connect.CleanSession && Inner.PacketFormatterAdapter.ProtocolVersion != MqttProtocolVersion.V500)
                    connect.ClientId = NewClientId();
            }
            return packet;
        }
    }
}
