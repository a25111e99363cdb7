using System.Buffers;
using System.Collections.Concurrent;
using System.Text.Json;
using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Protocol;

namespace QanaEdge.Daemon.Tests.Infrastructure;

/// <summary>
/// An MQTTnet client subscribed (QoS 1, persistent session) to a device's topics; records every message.
/// <see cref="Results"/> maps result_id → the parsed payloads received for it (more than one means a redelivery).
/// </summary>
public sealed class ResultSubscriber : IAsyncDisposable
{
    private readonly IMqttClient _client = new MqttClientFactory().CreateMqttClient();
    private readonly MqttClientOptions _options;
    private readonly string[] _filters;

    public ResultSubscriber(int port, params string[] filters)
    {
        _filters = filters;
        _options = new MqttClientOptionsBuilder()
            .WithTcpServer("127.0.0.1", port)
            .WithClientId("test-sub-" + Guid.NewGuid().ToString("N")[..8])
            .WithProtocolVersion(MqttProtocolVersion.V500)
            .WithCleanStart(false)
            .WithSessionExpiryInterval(3600)
            .Build();
        _client.ApplicationMessageReceivedAsync += e =>
        {
            string topic = e.ApplicationMessage.Topic;
            byte[] payload = e.ApplicationMessage.Payload.ToArray();
            Messages.Enqueue((topic, payload, e.ApplicationMessage.Retain));
            if (topic.EndsWith("/results", StringComparison.Ordinal))
            {
                using JsonDocument doc = JsonDocument.Parse(payload);
                string id = doc.RootElement.GetProperty("result_id").GetString()!;
                Results.GetOrAdd(id, _ => new ConcurrentQueue<JsonElement>()).Enqueue(doc.RootElement.Clone());
            }
            return Task.CompletedTask;
        };
    }

    public ConcurrentQueue<(string Topic, byte[] Payload, bool Retain)> Messages { get; } = new();
    public ConcurrentDictionary<string, ConcurrentQueue<JsonElement>> Results { get; } = new();
    public bool IsConnected => _client.IsConnected;

    /// <summary>Connects (retrying while the broker comes up) and subscribes.</summary>
    public async Task ConnectAsync(TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(15));
        while (true)
        {
            try
            {
                await _client.ConnectAsync(_options);
                var sub = new MqttClientSubscribeOptionsBuilder();
                foreach (string f in _filters) sub.WithTopicFilter(f, MqttQualityOfServiceLevel.AtLeastOnce);
                await _client.SubscribeAsync(sub.Build());
                return;
            }
            catch (Exception) when (DateTime.UtcNow < deadline) { await Task.Delay(100); }
        }
    }

    public async Task PublishAsync(string topic, byte[] payload, bool retain = false)
        => await _client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload(payload)
            .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).WithRetainFlag(retain).Build());

    /// <summary>
    /// Every one of <paramref name="images"/> got a result, under exactly one result id (a result sent twice carried
    /// the same id), and no result is of another image.
    /// </summary>
    public void AssertOneResultIdPerImage(IEnumerable<string> images)
    {
        var idsByImage = Results.SelectMany(kv => kv.Value.Select(v => (Sha: v.GetProperty("image_sha256").GetString()!, Id: kv.Key)))
            .GroupBy(x => x.Sha).ToDictionary(g => g.Key, g => g.Select(x => x.Id).Distinct().ToArray());
        var expected = images.Select(f => Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(f)))).ToHashSet();
        Assert.Equal(expected, idsByImage.Keys.ToHashSet());
        Assert.All(idsByImage.Values, ids => Assert.Single(ids));
    }

    public async ValueTask DisposeAsync()
    {
        if (_client.IsConnected) { try { await _client.DisconnectAsync(); } catch (Exception) { } }
        _client.Dispose();
    }
}
