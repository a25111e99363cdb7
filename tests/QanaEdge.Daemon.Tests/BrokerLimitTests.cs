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

    /// <summary>
    /// A broker that answers one message by closing the connection, without having announced any limit (a relay in front
    /// of mosquitto cuts the connection that carries it, as a broker whose ACL disconnects would): the results behind it
    /// are delivered, and it waits 1, 2, 4 ... s between tries, so the link reconnects once per try. It stays in the
    /// outbox, not a dead letter: a link that drops for its own reasons looks the same. Before, the drain sent it first on
    /// every new connection, for ever: the link reconnected several times a second and nothing behind it was delivered.
    /// </summary>
    [Fact]
    public async Task A_result_the_broker_answers_by_closing_the_connection_waits_its_turn_and_the_others_are_delivered()
    {
        const string topic = "qana/devcut/results";
        using var broker = new MosquittoBroker();
        using var relay = new CuttingRelay(broker.Port, Encoding.UTF8.GetBytes("\"poison\""));
        await using var sub = new ResultSubscriber(broker.Port, topic);
        await sub.ConnectAsync();
        using var store = new ResultStore(Path.Combine(_root, "qana.db"));
        var options = new MqttOptions { Host = "127.0.0.1", Port = relay.Port, ClientId = "qanad-devcut", MaxRefusals = 2, ReconnectMaxSeconds = 0.5 };
        var log = new RecordingLogger<OutboxPublisher>();
        var linkLog = new RecordingLogger<MqttLink>();
        await using var link = new MqttLink(options, "devcut", linkLog);
        await using var publisher = new OutboxPublisher(store, link, options, log);
        link.Start(() => Encoding.UTF8.GetBytes("""{"state":"online"}"""));
        publisher.Start();

        store.Commit([Result("c1", Payload("c1", 200), 1), Result("c2", Encoding.UTF8.GetBytes("""{"result_id":"c2","pad":"poison"}"""), 2),
            Result("c3", Payload("c3", 200), 3), Result("c4", Payload("c4", 200), 4)], topic);
        string State() => $"{store.DeadLetterCount()} dead letters, {store.OutboxCount()} in the outbox, delivered {string.Join(",", sub.Results.Keys)}, {relay.Cuts} cuts; "
            + string.Join(" | ", log.Lines.Concat(linkLog.Lines).TakeLast(6).Select(l => l.Message));

        // Three cuts, past MaxRefusals (2): the third try comes 1 + 2 s after the first. The subscriber can have a result
        // before its PUBACK has come back and its outbox entry is gone (or a cut lost that PUBACK, and it is sent again):
        // the outbox is waited for too.
        await TestEnv.WaitUntil(() => sub.Results.Count == 3 && relay.Cuts >= 3 && store.OutboxCount() == 1, TimeSpan.FromSeconds(60),
            "the others to be delivered and acknowledged, and c2 to be tried three times", State);
        Assert.Equal(["c1", "c3", "c4"], sub.Results.Keys.Order());
        Assert.Equal((0, 1), (store.DeadLetterCount(), store.OutboxCount()));
        Assert.Contains(log.Lines, l => l.Message.Contains("c2") && l.Message.Contains("the connection closed before its PUBACK"));
        // c2 alone is left, and it was cut at least three times: it now waits 4 s or more, so the link stays up between
        // its tries instead of going round reconnecting.
        int cuts = relay.Cuts;
        await Task.Delay(TimeSpan.FromSeconds(3));
        Assert.InRange(relay.Cuts - cuts, 0, 1);
        Assert.Equal((0, 1), (store.DeadLetterCount(), store.OutboxCount()));
    }

    /// <summary>
    /// A broker that announces a Receive Maximum (mosquitto's max_inflight_messages, sent in the CONNACK to MQTT 5
    /// clients) never has more than that many of the link's publishes awaiting their PUBACK, counted on the wire by a
    /// relay: before, the drain kept MaxInflight (32) in flight whatever the broker announced, a protocol error a broker
    /// may answer by closing the connection.
    /// </summary>
    [Fact]
    public async Task Publishes_in_flight_stay_within_the_brokers_receive_maximum()
    {
        const string topic = "qana/devrecv/results";
        using var broker = new MosquittoBroker(settings: "max_inflight_messages 2");
        using var relay = new CountingRelay(broker.Port);
        using var store = new ResultStore(Path.Combine(_root, "qana.db"));
        var options = new MqttOptions { Host = "127.0.0.1", Port = relay.Port, ClientId = "qanad-devrecv", ReconnectMaxSeconds = 0.5 };
        await using var link = new MqttLink(options, "devrecv", new RecordingLogger<MqttLink>());
        await using var publisher = new OutboxPublisher(store, link, options, new RecordingLogger<OutboxPublisher>());
        link.Start(() => Encoding.UTF8.GetBytes("""{"state":"online"}"""));
        LinkSession session = await link.WaitConnectedAsync(new CancellationTokenSource(TimeSpan.FromSeconds(30)).Token);
        Assert.Equal(2, session.ReceiveMaximum);
        publisher.Start();
        const int count = 200;
        store.Commit([.. Enumerable.Range(1, count).Select(i => Result($"q{i:D3}", Payload($"q{i:D3}", 300), i))], topic);

        await TestEnv.WaitUntil(() => store.OutboxCount() == 0, TimeSpan.FromSeconds(60), "the outbox to drain", () => $"{store.OutboxCount()} left");
        Assert.True(relay.Published >= count, $"{relay.Published} publishes seen");
        Assert.InRange(relay.MostInFlight, 1, 2);
        Assert.Equal(1, link.Current?.Number);
    }

    /// <summary>
    /// A TCP relay on loopback in front of the broker at port <c>target</c>: each connection a client makes to
    /// <see cref="Port"/> is handed, with one of its own to the broker, to <see cref="RelayAsync"/>.
    /// </summary>
    private abstract class Relay : IDisposable
    {
        private readonly System.Net.Sockets.TcpListener _listener = new(System.Net.IPAddress.Loopback, 0);
        private readonly int _target;
        protected readonly CancellationTokenSource Stopping = new();

        protected Relay(int target)
        {
            _target = target;
            _listener.Start();
            _ = Task.Run(AcceptAsync);
        }

        public int Port => ((System.Net.IPEndPoint)_listener.LocalEndpoint).Port;

        /// <summary>Passes bytes between the client (<paramref name="down"/>) and the broker (<paramref name="up"/>) until either side ends.</summary>
        protected abstract Task RelayAsync(Stream down, Stream up);

        private async Task AcceptAsync()
        {
            while (!Stopping.IsCancellationRequested)
            {
                System.Net.Sockets.TcpClient client;
                try { client = await _listener.AcceptTcpClientAsync(Stopping.Token); }
                catch (Exception) { return; }
                _ = Task.Run(() => ConnectAsync(client));
            }
        }

        private async Task ConnectAsync(System.Net.Sockets.TcpClient client)
        {
            using (client)
            using (var upstream = new System.Net.Sockets.TcpClient())
            {
                try
                {
                    await upstream.ConnectAsync("127.0.0.1", _target, Stopping.Token);
                    await RelayAsync(client.GetStream(), upstream.GetStream());
                }
                catch (Exception) { }
            }
        }

        public void Dispose()
        {
            Stopping.Cancel();
            _listener.Stop();
        }
    }

    /// <summary>Passes a connection's bytes to the broker and back, and closes it when the client sends <c>marker</c>.</summary>
    private sealed class CuttingRelay(int target, byte[] marker) : Relay(target)
    {
        private int _cuts;

        public int Cuts => Volatile.Read(ref _cuts);

        protected override async Task RelayAsync(Stream down, Stream up)
        {
            _ = up.CopyToAsync(down, Stopping.Token);
            var buffer = new byte[64 * 1024];
            while (true)
            {
                int read = await down.ReadAsync(buffer, Stopping.Token);
                if (read == 0) return;
                if (buffer.AsSpan(0, read).IndexOf(marker) >= 0)
                {
                    Interlocked.Increment(ref _cuts);
                    return;
                }
                await up.WriteAsync(buffer.AsMemory(0, read), Stopping.Token);
            }
        }
    }

    /// <summary>
    /// Passes a connection's bytes to the broker and back, following the MQTT packets: QoS 1 PUBLISHes from the client
    /// and PUBACKs to it, and the most publishes that were awaiting their PUBACK at once.
    /// </summary>
    private sealed class CountingRelay(int target) : Relay(target)
    {
        private readonly Lock _gate = new();
        private int _inFlight, _most, _published;

        public int MostInFlight { get { lock (_gate) return _most; } }
        public int Published { get { lock (_gate) return _published; } }

        protected override Task RelayAsync(Stream down, Stream up) =>
            Task.WhenAny(PumpAsync(down, up, fromClient: true), PumpAsync(up, down, fromClient: false));

        private async Task PumpAsync(Stream from, Stream to, bool fromClient)
        {
            var pending = new List<byte>();
            var buffer = new byte[64 * 1024];
            while (true)
            {
                int read = await from.ReadAsync(buffer, Stopping.Token);
                if (read == 0) return;
                pending.AddRange(buffer.AsSpan(0, read));
                while (TakePacket(pending) is byte header) Count(header, fromClient);
                // Counted before it is passed on: a PUBACK is counted before the client can send the next publish.
                await to.WriteAsync(buffer.AsMemory(0, read), Stopping.Token);
            }
        }

        private void Count(byte header, bool fromClient)
        {
            lock (_gate)
            {
                if (fromClient && header >> 4 == 3 && ((header >> 1) & 3) == 1)
                {
                    _published++;
                    _most = Math.Max(_most, ++_inFlight);
                }
                else if (!fromClient && header >> 4 == 4) _inFlight--;
            }
        }

        /// <summary>The first byte of the next whole packet in <paramref name="pending"/>, which it removes; null when none is whole yet.</summary>
        private static byte? TakePacket(List<byte> pending)
        {
            int length = 0, shift = 0, at = 1;
            while (true)
            {
                if (at >= pending.Count) return null;
                byte b = pending[at++];
                length |= (b & 0x7f) << shift;
                shift += 7;
                if ((b & 0x80) == 0) break;
            }
            if (pending.Count < at + length) return null;
            byte header = pending[0];
            pending.RemoveRange(0, at + length);
            return header;
        }
    }
}
