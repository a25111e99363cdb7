using MQTTnet;
using MQTTnet.Adapter;
using MQTTnet.Diagnostics.Logger;
using MQTTnet.Implementations;
using MQTTnet.Packets;

namespace QanaEdge.Daemon.Messaging;

/// <summary>
/// MQTTnet's own client connections, whose CONNECT announces <paramref name="keepAliveSeconds"/> while the client's
/// options say none. The keep-alive in a CONNECT is what the broker holds a client to (it drops one silent for 1.5 times
/// that and publishes its will); the one in the options also starts MQTTnet's keep-alive loop, which wakes every
/// 250 ms whatever the period. At rest that loop was the largest part of the daemon's wake-ups, so
/// <see cref="MqttLink"/> leaves it off and sends the pings itself, and this factory keeps the broker's side of the
/// contract. Everything else passes through (<see cref="ForwardingChannelAdapter"/>).
/// </summary>
internal sealed class KeepAliveAdapterFactory(ushort keepAliveSeconds) : IMqttClientAdapterFactory
{
    private readonly MqttClientAdapterFactory _inner = new();

    public IMqttChannelAdapter CreateClientAdapter(MqttClientOptions options, MqttPacketInspector packetInspector, IMqttNetLogger logger) =>
        new Adapter(_inner.CreateClientAdapter(options, packetInspector, logger), keepAliveSeconds);

    private sealed class Adapter(IMqttChannelAdapter inner, ushort keepAliveSeconds) : ForwardingChannelAdapter(inner)
    {
        public override Task SendPacketAsync(MqttPacket packet, CancellationToken cancellationToken)
        {
            if (packet is MqttConnectPacket connect) connect.KeepAlivePeriod = keepAliveSeconds;
            return base.SendPacketAsync(packet, cancellationToken);
        }
    }
}
