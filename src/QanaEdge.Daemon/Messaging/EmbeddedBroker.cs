using System.Net;
using Microsoft.Extensions.Logging;
using MQTTnet.Server;

namespace QanaEdge.Daemon.Messaging;

/// <summary>
/// The broker used when no Qana:Mqtt:Host is configured: MQTTnet.Server on 127.0.0.1 only, so a stand-alone device
/// works out of the box (mosquitto_sub -h 127.0.0.1 sees results) and nothing is exposed on the network.
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
        // mosquitto_sub and other clients send an empty client id and expect the broker to assign one
        // (MQTT 3.1.1 §3.1.3.1, MQTT 5 §3.1.3.1); MQTTnet refuses such a connection unless one is assigned here.
        _server.ValidatingConnectionAsync += e =>
        {
            if (string.IsNullOrEmpty(e.ClientId)) e.AssignedClientIdentifier = "auto-" + Guid.NewGuid().ToString("N");
            return Task.CompletedTask;
        };
        await _server.StartAsync().ConfigureAwait(false);
        log.LogInformation("Embedded MQTT broker listening on 127.0.0.1:{Port}", port);
    }

    public async ValueTask DisposeAsync()
    {
        if (_server is null) return;
        await _server.StopAsync().ConfigureAwait(false);
        _server.Dispose();
    }
}
