using System.Text;
using QanaEdge.Daemon.Configuration;
using QanaEdge.Daemon.Messaging;
using QanaEdge.Daemon.Storage;
using QanaEdge.Daemon.Tests.Infrastructure;

namespace QanaEdge.Daemon.Tests;

/// <summary>
/// A broker's limits on what a client sends, against a real mosquitto: its Maximum Packet Size (max_packet_size,
/// announced in the CONNACK to MQTT 5 clients; mosquitto closes the connection of a client that sends a larger packet).
/// </summary>
public sealed class BrokerLimitTests : IDisposable
{
    private readonly string _root = TestEnv.TempDir("brokerlimit");

    public void Dispose()
    {
        try { Directory.Delete(_root, recursive: true); } catch (IOException) { }
    }

    private static byte[] Payload(string id, int bytes)
    {
        string head = "{\"result_id\":\"" + id + "\",\"pad\":\"", tail = "\"}";
        return Encoding.UTF8.GetBytes(head + new string('x', bytes - head.Length - tail.Length) + tail);
    }

    private static StoredResult Result(string id, byte[] payload, int n) =>
        new(id, $"{n:x64}", "nv", 0.9f, false, false, "m", "1", 2.5, null, DateTime.UtcNow, "inbox", payload, n);

    /// <summary>
    /// One result over the broker's Maximum Packet Size among results within it (one exactly at it, as this side counts;
    /// mosquitto 2.0.11 leaves the length bytes out of its count and takes a few bytes more): the others are
    /// delivered on the first connection, and the large one is refused without being sent and becomes a dead letter
    /// with the sizes in its reason. Before, it was sent, mosquitto closed the connection, and the drain sent it first
    /// again on every new connection, for ever: nothing behind it was delivered and the link reconnected several times a
    /// second.
    /// </summary>
    [Fact]
    public async Task A_result_over_the_brokers_packet_size_becomes_a_dead_letter_and_the_others_are_delivered()
    {
        const int limit = 1000;
        const string topic = "qana/devsize/results";
        using var broker = new MosquittoBroker(settings: $"max_packet_size {limit}");
        await using var sub = new ResultSubscriber(broker.Port, topic);
        await sub.ConnectAsync();
        using var store = new ResultStore(Path.Combine(_root, "qana.db"));
        var options = new MqttOptions { Host = "127.0.0.1", Port = broker.Port, ClientId = "qanad-devsize", MaxRefusals = 2, ReconnectMaxSeconds = 0.5 };
        var log = new RecordingLogger<OutboxPublisher>();
        var linkLog = new RecordingLogger<MqttLink>();
        await using var link = new MqttLink(options, "devsize", linkLog);
        await using var publisher = new OutboxPublisher(store, link, options, log);
        link.Start(() => Encoding.UTF8.GetBytes("""{"state":"online"}"""));
        publisher.Start();

        int atLimit = limit;
        while (MqttLink.PublishPacketBytes(topic, atLimit) > limit) atLimit--;
        Assert.Equal(limit, MqttLink.PublishPacketBytes(topic, atLimit));
        store.Commit([Result("r1", Payload("r1", 200), 1), Result("r2", Payload("r2", atLimit), 2),
            Result("r3", Payload("r3", 2 * limit), 3), Result("r4", Payload("r4", 200), 4)], topic);
        string State() => $"{store.DeadLetterCount()} dead letters, {store.OutboxCount()} in the outbox, delivered {string.Join(",", sub.Results.Keys)}; "
            + string.Join(" | ", log.Lines.Concat(linkLog.Lines).TakeLast(6).Select(l => l.Message));

        await TestEnv.WaitUntil(() => store.DeadLetterCount() == 1 && store.OutboxCount() == 0 && sub.Results.Count == 3,
            TimeSpan.FromSeconds(30), "r3 to become a dead letter and the others to be delivered", State);
        Assert.Equal(["r1", "r2", "r4"], sub.Results.Keys.Order());
        DeadLetterEntry dead = Assert.Single(store.DeadLetters());
        Assert.Equal($"not sent on {topic}: the message is {MqttLink.PublishPacketBytes(topic, 2 * limit)} bytes as an MQTT packet, over the {limit} bytes the broker takes (its Maximum Packet Size)", dead.Reason);
        Assert.Equal(1, link.Current?.Number);
        Assert.Equal(0, linkLog.Count("lost"));
    }
}
