using System.Net;
using Microsoft.Extensions.Logging;
using MQTTnet.Server;

namespace QanaEdge.Daemon.Messaging;

/// <summary>
/// The broker used when no Qana:Mqtt:Host is configured: MQTTnet.Server on 127.0.0.1 only, so a stand-alone device
/// works out of the box (mosquitto_sub -h 127.0.0.1 -i NAME sees results) and nothing is exposed on the network.
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
        _server = new MqttServerFactory().CreateMqttServer(options);
        // Clients that send an empty client id expect the broker to assign one. MQTTnet takes an assigned id only from
        // MQTT 5 clients (mosquitto_sub -V mqttv5); an MQTT 3.1.1 client with an empty id is refused with CONNACK
        // "identifier rejected", which that version of the protocol allows (§3.1.3.1), so such clients name themselves
        // (mosquitto_sub -i NAME, as the make run banner and the docs show).
        _server.ValidatingConnectionAsync += e =>
        {
            if (string.IsNullOrEmpty(e.ClientId)) e.AssignedClientIdentifier = "auto-" + Guid.NewGuid().ToString("N");
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
}
