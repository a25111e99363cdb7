using System.Text;
using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Protocol;
using QanaEdge.Daemon.Messaging;
using QanaEdge.Daemon.Tests.Infrastructure;
using Serilog.Events;

namespace QanaEdge.Daemon.Tests;

/// <summary>
/// What anyone who may publish on qana/{device}/feedback or an updates topic can make the daemon store and log is bounded, and a label of
/// a result of this device is kept whatever came before it. The daemon in-process, a real mosquitto, a real LiteDB
/// file and a real HAM10000 JPEG.
/// </summary>
public sealed class InboundBoundsTests : IDisposable
{
    private readonly MosquittoBroker _broker = new();
    private readonly string _root = TestEnv.TempDir("feedback-bounds");

    public void Dispose()
    {
        _broker.Dispose();
        try { Directory.Delete(_root, recursive: true); } catch (IOException) { }
    }

    [Fact]
    public async Task Oversized_and_unknown_labels_are_bounded_and_logged_sparingly_while_a_label_of_this_device_is_kept()
    {
        await using var sub = new ResultSubscriber(_broker.Port, "qana/devb/results");
        await sub.ConnectAsync();
        await using var daemon = new DaemonRunner(_root, _broker.Port, "devb");
        await daemon.StartAsync();
        TestEnv.Drop(TestEnv.RealImages(1, skip: 23)[0], daemon.Inbox);
        await TestEnv.WaitUntil(() => sub.Results.Count == 1, TimeSpan.FromSeconds(30), "the result");
        string resultId = sub.Results.Keys.Single();
        const string topic = "qana/devb/feedback";

        // A label of a result of this device, but over the bound: refused with the reason, not stored.
        string note = new('n', Payloads.MaxFeedbackBytes);
        await sub.PublishAsync(topic, Encoding.UTF8.GetBytes($$"""{"result_id":"{{resultId}}","label":"mel","note":"{{note}}"}"""));
        // Eleven more refused labels: malformed, a wrong type, an unknown class.
        for (int i = 0; i < 11; i++)
            await sub.PublishAsync(topic, Encoding.UTF8.GetBytes((i % 3) switch { 0 => "{\"result_id\":", 1 => """{"result_id":7,"label":"nv"}""", _ => """{"result_id":"r","label":"mole"}""" }));
        // Labels of results this device does not have, five past the bound.
        for (int i = 0; i < InboundHandler.MaxUnknownLabels + 5; i++)
            await sub.PublishAsync(topic, Encoding.UTF8.GetBytes($$"""{"result_id":"elsewhere{{i}}","label":"nv","clinician":"dr-x"}"""));
        // Then a label of this device's result: kept although the unknown ones filled their share.
        await sub.PublishAsync(topic, Encoding.UTF8.GetBytes($$"""{"result_id":"{{resultId}}","label":"bcc","clinician":"dr-b"}"""));
        // The handler logs the stored label first and the counts of the runs it ends after: wait for both lines.
        await TestEnv.WaitUntil(() => daemon.Log.Events.Any(e => e.Message.Contains($"Feedback stored: result {resultId} labelled bcc", StringComparison.Ordinal))
            && daemon.Log.Events.Any(e => e.Message.StartsWith("Since the previous label of a result of this device", StringComparison.Ordinal)),
            TimeSpan.FromSeconds(120), "the label of this device's result");

        Assert.Equal(InboundHandler.MaxUnknownLabels + 1, daemon.Store!.FeedbackCount());
        string[] warnings = daemon.Log.At(LogEventLevel.Warning).ToArray();
        // The 1st and the 10th of the twelve refusals in a row, the first with its reason.
        string[] refused = warnings.Where(w => w.Contains("Feedback refused", StringComparison.Ordinal)).ToArray();
        Assert.Equal(2, refused.Length);
        Assert.Contains($"more than the {Payloads.MaxFeedbackBytes} a label may have", refused[0], StringComparison.Ordinal);
        // The 1st, 10th, 100th and 1000th of the unknown ones.
        Assert.Equal(4, warnings.Count(w => w.Contains("unknown result", StringComparison.Ordinal)));
        // And every one of them counted when the run ended.
        Assert.Contains(warnings, w => w.Contains($"12 labels refused, {InboundHandler.MaxUnknownLabels + 5} labels of results this device does not have", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Update_packages_not_applied_are_each_in_the_update_log_and_logged_sparingly()
    {
        await using var sub = new ResultSubscriber(_broker.Port, "qana/devu/status");
        await sub.ConnectAsync();
        await using var daemon = new DaemonRunner(_root, _broker.Port, "devu");
        await daemon.StartAsync();
        await TestEnv.WaitUntil(() => sub.Messages.Any(m => m.Topic == "qana/devu/status"), TimeSpan.FromSeconds(30), "the daemon online");
        // Twelve packages that are none (on the device topic and the fleet topic): each refused.
        for (int i = 0; i < 12; i++)
            await sub.PublishAsync(i % 2 == 0 ? "qana/devu/updates" : "qana/fleet/updates", Encoding.UTF8.GetBytes($"not a package {i}"));
        await TestEnv.WaitUntil(() => daemon.Store!.UpdateLog().Count == 12, TimeSpan.FromSeconds(60), "twelve update-log entries");

        Assert.All(daemon.Store!.UpdateLog(), u => Assert.Equal("refused", u.Outcome));
        string[] logged = daemon.Log.At(LogEventLevel.Warning).Where(w => w.Contains("Update package on", StringComparison.Ordinal)).ToArray();
        Assert.Equal(2, logged.Length);   // the 1st and the 10th in a row
        Assert.Contains("1 not applied in a row", logged[0], StringComparison.Ordinal);
        Assert.Contains("10 not applied in a row", logged[1], StringComparison.Ordinal);
    }

    /// <summary>
    /// An update package is applied off the link's receive path: a clinician's label sent after a package whose apply
    /// hangs (here reading the trust folder, where a key file is a FIFO no one writes yet) is stored at once, and the
    /// package, once its apply ends, is recorded (and acknowledged). One that takes longer than
    /// Qana:Mqtt:UpdateApplySeconds is logged as such, once. Before, the package was applied on MQTTnet's task that takes
    /// the inbound messages one after the other, and the label waited for it, for ever behind one that hung.
    /// </summary>
    [Fact]
    public async Task A_label_is_stored_while_an_update_package_is_still_being_applied()
    {
        string trust = Directory.CreateDirectory(Path.Combine(_root, "trust")).FullName;
        await using var sub = new ResultSubscriber(_broker.Port, "qana/devh/status");
        await sub.ConnectAsync();
        var daemon = new DaemonRunner(_root, _broker.Port, "devh", null, $"--Qana:TrustDir={trust}", "--Qana:Mqtt:UpdateApplySeconds=1");
        await using var stopped = daemon;
        await daemon.StartAsync();
        await TestEnv.WaitUntil(() => sub.Messages.Any(m => m.Topic == "qana/devh/status"), TimeSpan.FromSeconds(30), "the daemon online");
        string fifo = Path.Combine(trust, "hung.pub");
        using (var mkfifo = System.Diagnostics.Process.Start("mkfifo", fifo)) mkfifo.WaitForExit();
        try
        {
            await sub.PublishAsync("qana/devh/updates", Encoding.UTF8.GetBytes("a package whose check hangs"));
            await sub.PublishAsync("qana/devh/feedback", Encoding.UTF8.GetBytes("""{"result_id":"elsewhere","label":"nv","clinician":"dr-h"}"""));

            await TestEnv.WaitUntil(() => daemon.Store!.FeedbackCount() == 1, TimeSpan.FromSeconds(20), "the label stored while the update hangs");
            await TestEnv.WaitUntil(() => daemon.Log.At(LogEventLevel.Error).Any(e => e.Contains("still being applied after 1 s", StringComparison.Ordinal)),
                TimeSpan.FromSeconds(20), "the apply said to take long");
            Assert.Empty(daemon.Store!.UpdateLog());
        }
        finally
        {
            // The key file's reader gets a line that is no key: the package is refused for it.
            using var writer = new FileStream(fifo, FileMode.Open, FileAccess.Write);
            writer.Write("not a key\n"u8);
        }
        await TestEnv.WaitUntil(() => daemon.Store!.UpdateLog().Count == 1, TimeSpan.FromSeconds(20), "the package's update-log entry");
        Assert.Equal("refused", daemon.Store!.UpdateLog().Single().Outcome);
        Assert.Single(daemon.Log.At(LogEventLevel.Error), e => e.Contains("still being applied", StringComparison.Ordinal));

        // It was acknowledged: the broker does not send it again to the session resumed by the next start, which gets
        // the package sent after it only.
        await daemon.DisposeAsync();
        File.Delete(fifo);
        await using var again = new DaemonRunner(_root, _broker.Port, "devh", null, $"--Qana:TrustDir={trust}");
        await again.StartAsync();
        await sub.PublishAsync("qana/devh/updates", Encoding.UTF8.GetBytes("a package sent after the restart"));
        await TestEnv.WaitUntil(() => again.Store!.UpdateLog().Count >= 2, TimeSpan.FromSeconds(30), "the later package's update-log entry");
        Assert.Equal(2, again.Store!.UpdateLog().Count);
    }

    /// <summary>
    /// The link announces a maximum packet size (<see cref="MqttLink.MaxPacketBytes"/>), so the broker drops a message
    /// larger than that for this device instead of delivering it: before, anything up to mosquitto's 256 MB reached the
    /// daemon whole, in memory, on a board that may have less (a 33 MiB package was received and refused). A message
    /// under the limit, sent after it, is handled as before. The embedded broker (MQTTnet's server) ignored the size
    /// the link announces and delivered the large message; it now closes the publisher's connection as the message's
    /// fixed header arrives.
    /// </summary>
    [Theory]
    [InlineData("mosquitto")]
    [InlineData("embedded")]   // the daemon's own broker (Qana:Mqtt:Host unset), MQTTnet's server
    public async Task A_message_over_the_packet_limit_is_not_delivered_and_one_under_it_is(string broker)
    {
        int port = broker == "embedded" ? TestEnv.FreeTcpPort() : _broker.Port;
        await using var daemon = broker == "embedded"
            ? new DaemonRunner(_root, null, "devp", null, $"--Qana:Mqtt:Port={port}")
            : new DaemonRunner(_root, port, "devp");
        await daemon.StartAsync();   // the embedded broker is up once the daemon has started
        await using var sub = new ResultSubscriber(port, "qana/devp/status");
        await sub.ConnectAsync();
        await TestEnv.WaitUntil(() => sub.Messages.Any(m => m.Topic == "qana/devp/status"), TimeSpan.FromSeconds(30), "the daemon online");

        byte[] small = Encoding.UTF8.GetBytes("not a package");
        string smallSha = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(small));
        Task large = PublishLargeAsync(port, "qana/devp/updates", new byte[MqttLink.MaxPacketBytes + (1 << 20)]);
        if (broker == "embedded") await Assert.ThrowsAnyAsync<Exception>(() => large);   // its connection closed before the PUBACK
        else await large;
        await sub.PublishAsync("qana/devp/updates", small);
        // Messages of one topic arrive in order and are handled one at a time: the large one, had it come, is logged first.
        await TestEnv.WaitUntil(() => daemon.Store!.UpdateLog().Any(u => u.Sha256 == smallSha), TimeSpan.FromSeconds(60), "the small message's update-log entry");
        var entry = Assert.Single(daemon.Store!.UpdateLog());
        Assert.Equal(("refused", smallSha), (entry.Outcome, entry.Sha256));
        // MQTTnet's server ignores the size the link announces (it delivered the large message): the broker refuses it.
        if (broker == "embedded")
            Assert.Contains(daemon.Log.Events, e => e.Message.StartsWith("Embedded broker: connection from 127.0.0.1:", StringComparison.Ordinal)
                && e.Message.Contains($"-byte packet, over the {MqttLink.MaxPacketBytes}-byte limit", StringComparison.Ordinal));
    }

    /// <summary>
    /// Publishes <paramref name="payload"/> at QoS 1 from a client of its own whose keep-alive (10 minutes) sends no ping
    /// meanwhile and which waits two minutes for the PUBACK: the subscriber's ping, queued behind 33 MiB on a busy
    /// machine, timed out and took the client down. (A keep-alive of zero, none at all, had this client disconnected.)
    /// </summary>
    private static async Task PublishLargeAsync(int port, string topic, byte[] payload)
    {
        using var client = new MqttClientFactory().CreateMqttClient();
        await client.ConnectAsync(new MqttClientOptionsBuilder().WithTcpServer("127.0.0.1", port).WithProtocolVersion(MqttProtocolVersion.V500)
            .WithClientId("test-large-" + Guid.NewGuid().ToString("N")[..8]).WithKeepAlivePeriod(TimeSpan.FromMinutes(10)).WithTimeout(TimeSpan.FromMinutes(2)).Build());
        await client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload(payload)
            .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build());
        await client.DisconnectAsync();
    }
}

/// <summary>A label whose strings are not valid text is refused with the reason, not thrown at the MQTT client.</summary>
public sealed class FeedbackTextTests
{
    [Theory]
    [InlineData("""{"result_id":"\ud800","label":"nv"}""")]                   // a lone high surrogate
    [InlineData("""{"result_id":"r1","label":"\udc00"}""")]                   // a lone low surrogate
    [InlineData("""{"result_id":"r1","label":"nv","note":"a\ud800b"}""")]     // in an optional field
    [InlineData("""{"result_id":"r1","label":"nv","clinician":"\udfff"}""")]
    public void A_string_with_a_lone_surrogate_is_refused(string json)
    {
        Assert.False(Payloads.TryParseFeedback(Encoding.UTF8.GetBytes(json), out _, out _, out _, out _, out _, out string error));
        Assert.StartsWith("invalid text in a JSON string", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Bytes_that_are_not_utf8_inside_a_string_are_refused()
    {
        byte[] json = [.. Encoding.UTF8.GetBytes("{\"result_id\":\"r"), 0xFF, 0xFE, .. Encoding.UTF8.GetBytes("\",\"label\":\"nv\"}")];
        Assert.False(Payloads.TryParseFeedback(json, out _, out _, out _, out _, out _, out string error));
        Assert.StartsWith("invalid text in a JSON string", error, StringComparison.Ordinal);
    }
}
