using System.Net;
using System.Security.Cryptography.X509Certificates;
using MQTTnet.Adapter;
using MQTTnet.Formatter;
using MQTTnet.Packets;

namespace QanaEdge.Daemon.Messaging;

/// <summary>
/// An MQTTnet channel adapter that passes everything to <see cref="Inner"/>: the daemon's adapters change one thing on
/// the way (the embedded broker's client ids, the link's announced keep-alive) by overriding a send or a receive.
/// </summary>
internal abstract class ForwardingChannelAdapter(IMqttChannelAdapter inner) : IMqttChannelAdapter
{
    protected IMqttChannelAdapter Inner { get; } = inner;

    public virtual Task SendPacketAsync(MqttPacket packet, CancellationToken cancellationToken) => Inner.SendPacketAsync(packet, cancellationToken);
    public virtual Task<MqttPacket> ReceivePacketAsync(CancellationToken cancellationToken) => Inner.ReceivePacketAsync(cancellationToken);

    public long BytesReceived => Inner.BytesReceived;
    public long BytesSent => Inner.BytesSent;
    public X509Certificate2 ClientCertificate => Inner.ClientCertificate;
    public EndPoint RemoteEndPoint => Inner.RemoteEndPoint;
    public EndPoint LocalEndPoint => Inner.LocalEndPoint;
    public bool IsSecureConnection => Inner.IsSecureConnection;
    public MqttPacketFormatterAdapter PacketFormatterAdapter => Inner.PacketFormatterAdapter;
    public Task ConnectAsync(CancellationToken cancellationToken) => Inner.ConnectAsync(cancellationToken);
    public Task DisconnectAsync(CancellationToken cancellationToken) => Inner.DisconnectAsync(cancellationToken);
    public void ResetStatistics() => Inner.ResetStatistics();
    public void Dispose() => Inner.Dispose();
}
