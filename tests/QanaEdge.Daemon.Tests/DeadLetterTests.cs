using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using QanaEdge.Daemon.Configuration;
using QanaEdge.Daemon.Messaging;
using QanaEdge.Daemon.Storage;
using QanaEdge.Daemon.Tests.Infrastructure;

namespace QanaEdge.Daemon.Tests;

/// <summary>
/// A result the broker refuses (here mosquitto's ACL: NotAuthorized on the results topic) is tried again with a
/// growing wait, then kept in LiteDB's dead letters with the broker's reason instead of restarting the drain for
/// ever; after the broker is fixed, a restart sends it.
/// </summary>
public sealed class DeadLetterTests : IDisposable
{
    private const string Closed = "topic readwrite qana/devdl/status\ntopic read qana/devdl/#\ntopic read qana/fleet/#\n";
    private readonly MosquittoBroker _broker = new(acl: Closed);
    private readonly string _root = TestEnv.TempDir("deadletter");

    public void Dispose()
    {
        _broker.Dispose();
        try { Directory.Delete(_root, recursive: true); } catch (IOException) { }
    }

    private static string Sha(string file) => Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(file)));

    [Fact]
    public async Task Refused_results_become_dead_letters_with_the_reason_and_are_sent_after_a_restart()
    {
        string[] images = TestEnv.RealImages(2, skip: 980);
        await using var sub = new ResultSubscriber(_broker.Port, "qana/devdl/results", "qana/devdl/status");
        await sub.ConnectAsync();
        await using (var daemon = new DaemonRunner(_root, _broker.Port, "devdl", null, "--Qana:Mqtt:MaxRefusals=3"))
        {
            await daemon.StartAsync();
            foreach (string image in images) TestEnv.Drop(image, daemon.Inbox);
            // Refused, waits 1 s, refused, waits 2 s, refused: a dead letter, out of the outbox. The publisher logs each
            // one after moving it: the wait takes in those lines too; the delay below is for what must not follow.
            await TestEnv.WaitUntil(() => daemon.Store is { } s && s.DeadLetters().Count == images.Length && s.OutboxCount() == 0
                && daemon.Log.At(Serilog.Events.LogEventLevel.Error).Count(e => e.Contains("moved to the dead letters", StringComparison.Ordinal)) >= images.Length,
                TimeSpan.FromSeconds(60),
                "both results to become dead letters", () => string.Join(" | ", daemon.Log.Events.TakeLast(10).Select(e => e.Message)));
            await Task.Delay(TimeSpan.FromSeconds(2));
            List<DeadLetterEntry> dead = daemon.Store!.DeadLetters();
            Assert.All(dead, d => Assert.Contains("NotAuthorized", d.Reason, StringComparison.Ordinal));
            Assert.All(dead, d => Assert.Equal((3, "qana/devdl/results"), (d.Refusals, d.Topic)));
            // Three refusals each, and the drain was never restarted for them.
            string[] warnings = [.. daemon.Log.At(Serilog.Events.LogEventLevel.Warning)];
            Assert.Equal(2 * images.Length, warnings.Count(w => w.Contains("refused (", StringComparison.Ordinal)));
            Assert.DoesNotContain(warnings, w => w.Contains("Outbox drain interrupted", StringComparison.Ordinal));
            Assert.Equal(images.Length, daemon.Log.At(Serilog.Events.LogEventLevel.Error).Count(e => e.Contains("moved to the dead letters", StringComparison.Ordinal)));
            Assert.Empty(sub.Results);
            // The retained status says so (the ACL lets the status topic through).
            await TestEnv.WaitUntil(() => DeadLettersInStatus(sub) == images.Length, TimeSpan.FromSeconds(10), "the status to count both dead letters");
        }

        // The broker's ACL is fixed; the next start puts the dead letters back in the outbox and the broker takes them.
        _broker.Stop();
        _broker.Acl = "topic readwrite #\n";
        _broker.Start();
        await sub.ConnectAsync();
        await using (var again = new DaemonRunner(_root, _broker.Port, "devdl", null, "--Qana:Mqtt:MaxRefusals=3"))
        {
            await again.StartAsync();
            await TestEnv.WaitUntil(() => sub.Results.Count >= images.Length, TimeSpan.FromSeconds(30), "the dead letters to be delivered");
            Assert.Equal(images.Select(Sha).ToHashSet(), sub.Results.Values.Select(q => q.First().GetProperty("image_sha256").GetString()!).ToHashSet());
            await TestEnv.WaitUntil(() => again.Store!.OutboxCount() == 0, TimeSpan.FromSeconds(10), "the outbox to drain");
            Assert.Empty(again.Store!.DeadLetters());
            await TestEnv.WaitUntil(() => DeadLettersInStatus(sub) == 0, TimeSpan.FromSeconds(10), "the status to count no dead letters");
        }
    }

    /// <summary>
    /// A broker that refuses the retained status (an ACL that leaves out the status topic) still takes the results: the
    /// link comes up, says once per connection that the status was refused, and the results are delivered. Before, the
    /// refused status failed every connection attempt, so no result was ever sent.
    /// </summary>
    /// <summary>
    /// Many refused entries at once: each one's turn comes while others are in flight, and an entry whose turn came
    /// while the drain waited for the others' PUBACKs was left for the minute's look (the idle drain counted only
    /// turns still to come). Each of twenty results gets its three refusals and becomes a dead letter.
    /// </summary>
    [Fact]
    public async Task Twenty_refused_results_each_get_their_tries_and_become_dead_letters()
    {
        using var store = new ResultStore(Path.Combine(_root, "qana.db"));
        var options = new MqttOptions { Host = "127.0.0.1", Port = _broker.Port, ClientId = "qanad-devdl", MaxRefusals = 3, MaxInflight = 4 };
        var log = new RecordingLogger<OutboxPublisher>();
        await using var link = new MqttLink(options, "devdl", NullLogger<MqttLink>.Instance);
        await using var publisher = new OutboxPublisher(store, link, options, log);
        link.Start(() => Encoding.UTF8.GetBytes("""{"state":"online"}"""));
        publisher.Start();
        const int count = 20;
        store.Commit([.. Enumerable.Range(1, count).Select(i => new StoredResult($"r{i:D4}", $"{i:x64}", "nv", 0.9f, false, false, "m", "1", 2.5,
            null, DateTime.UtcNow, "inbox", Encoding.UTF8.GetBytes($$"""{"result_id":"r{{i:D4}}"}"""), i))], "qana/devdl/results");

        // Refused, 1 s, refused, 2 s, refused: about 3 s each, all at once.
        await TestEnv.WaitUntil(() => store.DeadLetterCount() == count, TimeSpan.FromSeconds(40), "every result to become a dead letter",
            () => $"{store.DeadLetterCount()} dead letters, {store.OutboxCount()} in the outbox; " + string.Join(" | ", log.Lines.TakeLast(5).Select(l => l.Message)));
        Assert.Equal(0, store.OutboxCount());
        Assert.All(store.DeadLetters(), d => Assert.Equal(3, d.Refusals));
        Assert.Equal(2 * count, log.Count("refused (broker refused"));
    }

    [Fact]
    public async Task A_broker_that_refuses_the_status_still_gets_the_results()
    {
        using var broker = new MosquittoBroker(acl: "topic write qana/devst/results\ntopic read qana/devst/#\ntopic read qana/fleet/#\n");
        string[] images = TestEnv.RealImages(2, skip: 982);
        await using var sub = new ResultSubscriber(broker.Port, "qana/devst/results");
        await sub.ConnectAsync();
        await using var daemon = new DaemonRunner(_root, broker.Port, "devst", null, "--Qana:Mqtt:ReconnectMaxSeconds=0.5");
        await daemon.StartAsync();
        foreach (string image in images) TestEnv.Drop(image, daemon.Inbox);

        await TestEnv.WaitUntil(() => sub.Results.Count == images.Length, TimeSpan.FromSeconds(60), "both results",
            () => string.Join(" | ", daemon.Log.Events.TakeLast(10).Select(e => e.Message)));
        Assert.Equal(images.Select(Sha).ToHashSet(), sub.Results.Values.Select(q => q.First().GetProperty("image_sha256").GetString()!).ToHashSet());
        Assert.Contains(daemon.Log.At(Serilog.Events.LogEventLevel.Warning), w => w.Contains("NotAuthorized", StringComparison.Ordinal) && w.Contains("status", StringComparison.Ordinal));
        await TestEnv.WaitUntil(() => daemon.Store!.OutboxCount() == 0, TimeSpan.FromSeconds(10), "the outbox to drain");
    }

    private static int? DeadLettersInStatus(ResultSubscriber sub) =>
        sub.Messages.Where(m => m.Topic == "qana/devdl/status").Select(m => System.Text.Json.JsonDocument.Parse(m.Payload).RootElement)
            .LastOrDefault(e => e.TryGetProperty("dead_letters", out _)) is { ValueKind: System.Text.Json.JsonValueKind.Object } status
            ? status.GetProperty("dead_letters").GetInt32() : null;
}
