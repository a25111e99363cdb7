using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using QanaEdge.Daemon.Classification;
using QanaEdge.Daemon.Storage;
using QanaEdge.Daemon.Tests.Infrastructure;
using QanaEdge.Imaging;
using QanaEdge.Model.Packaging;
using QanaEdge.TestSupport;

namespace QanaEdge.Daemon.Tests;

/// <summary>The daemon in-process against a real mosquitto, real LiteDB files and real HAM10000 JPEGs.</summary>
public sealed class EndToEndTests : IDisposable
{
    private readonly MosquittoBroker _broker = new();
    private readonly string _root = TestEnv.TempDir("e2e");

    public void Dispose()
    {
        _broker.Dispose();
        try { Directory.Delete(_root, recursive: true); } catch (IOException) { }
    }

    private static string Sha(string file) => Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(file)));

    [Fact]
    public async Task Two_hundred_real_images_give_two_hundred_results_on_the_broker()
    {
        string[] images = TestEnv.RealImages(200);
        await using var sub = new ResultSubscriber(_broker.Port, "qana/dev200/#");
        await sub.ConnectAsync();
        await using var daemon = new DaemonRunner(_root, _broker.Port, "dev200");
        await daemon.StartAsync();
        foreach (string image in images) TestEnv.Drop(image, daemon.Inbox);

        await TestEnv.WaitUntil(() => sub.Results.Count >= 200, TimeSpan.FromSeconds(240), "200 results");
        var expected = images.Select(Sha).ToHashSet();
        var got = sub.Results.Values.Select(q => q.First().GetProperty("image_sha256").GetString()!).ToHashSet();
        Assert.Equal(expected, got);
        // Every field of the DESIGN.md contract, with the right types.
        JsonElement r = sub.Results.Values.First().First();
        Assert.Equal(64, r.GetProperty("image_sha256").GetString()!.Length);
        Assert.Contains(r.GetProperty("label").GetString(), QanaEdge.Model.Classes.Codes);
        JsonElement probabilities = r.GetProperty("probabilities");
        Assert.Equal(QanaEdge.Model.Classes.Codes, probabilities.EnumerateObject().Select(p => p.Name).ToArray());
        Assert.InRange(probabilities.EnumerateObject().Sum(p => p.Value.GetDouble()), 0.999, 1.001);
        Assert.Equal(JsonValueKind.Number, r.GetProperty("confidence").ValueKind);
        Assert.True(r.GetProperty("refer").ValueKind is JsonValueKind.True or JsonValueKind.False);
        Assert.True(r.GetProperty("tiled").ValueKind is JsonValueKind.True or JsonValueKind.False);
        Assert.False(r.GetProperty("symmetrized").GetBoolean()); // an addition: only with Qana:Fallback=Symmetries
        Assert.Equal(TestModel.Id, r.GetProperty("model").GetProperty("id").GetString());
        Assert.Equal(JsonValueKind.String, r.GetProperty("model").GetProperty("version").ValueKind);
        Assert.Equal(JsonValueKind.Number, r.GetProperty("latency_ms").ValueKind);
        Assert.Equal(JsonValueKind.Null, r.GetProperty("energy_mj").ValueKind);
        Assert.True(DateTime.TryParse(r.GetProperty("captured_at").GetString(), out _));

        // Retained status: online, with engine and model.
        var status = sub.Messages.Where(m => m.Topic == "qana/dev200/status").Select(m => JsonDocument.Parse(m.Payload).RootElement).Last();
        Assert.Equal("online", status.GetProperty("state").GetString());
        Assert.StartsWith("managed IntegerEngine", status.GetProperty("engine").GetString());
        Assert.Contains("no Akida device", status.GetProperty("engine_reason").GetString());
        Assert.Equal(TestModel.Id, status.GetProperty("model").GetProperty("id").GetString());
        // The store's pruning at its default period, nothing deleted yet (its first pass is a minute after the start).
        JsonElement pruning = status.GetProperty("store");
        Assert.Equal(365, pruning.GetProperty("keep_results_days").GetDouble());
        Assert.Equal(0, pruning.GetProperty("deleted_results").GetInt64());
        Assert.Equal(JsonValueKind.Null, pruning.GetProperty("last_deleted_at").ValueKind);

        // Captures acknowledged (moved to done), outbox drained once PUBACKs arrived.
        await TestEnv.WaitUntil(() => Directory.GetFiles(daemon.Inbox).Length == 0, TimeSpan.FromSeconds(10), "inbox to empty");
        Assert.Equal(200, Directory.GetFiles(daemon.DoneDir).Length);
        await TestEnv.WaitUntil(() => daemon.Store!.OutboxCount() == 0, TimeSpan.FromSeconds(10), "outbox to drain");
        Assert.Equal(200, daemon.Store!.ResultCount());
        // On a link that never dropped nothing is sent twice: the publisher reads on past what is in flight, and a
        // re-read from the start while PUBACKs are outstanding would resend those entries.
        Assert.All(sub.Results.Values, copies => Assert.Single(copies));
    }

    /// <summary>
    /// Qana:Fallback=Symmetries reaches every worker: each result is what the classifier gives with the symmetry
    /// fallback, says whether it ran, and never tiles.
    /// </summary>
    [Fact]
    public async Task The_symmetry_fallback_is_chosen_by_configuration_and_named_in_each_result()
    {
        string[] images = TestEnv.RealImages(6, skip: 700);
        var bySha = images.ToDictionary(Sha);
        await using var sub = new ResultSubscriber(_broker.Port, "qana/devsym/#");
        await sub.ConnectAsync();
        await using var daemon = new DaemonRunner(_root, _broker.Port, "devsym", null, "--Qana:Fallback=Symmetries");
        await daemon.StartAsync();
        foreach (string image in images) TestEnv.Drop(image, daemon.Inbox);
        await TestEnv.WaitUntil(() => sub.Results.Count >= images.Length, TimeSpan.FromSeconds(120), "six results");

        ModelPackage model = PackageReader.Load(TestModel.Path_);
        using var direct = new LesionImageClassifier(model, LesionClassifier.CreateEngine(model), options: new ClassifierOptions { Symmetries = true });
        int symmetrized = 0;
        foreach (JsonElement r in sub.Results.Values.Select(q => q.First()))
        {
            Classification.Classification c = direct.Classify(File.ReadAllBytes(bySha[r.GetProperty("image_sha256").GetString()!]));
            Assert.Equal(c.Symmetrized, r.GetProperty("symmetrized").GetBoolean());
            Assert.False(r.GetProperty("tiled").GetBoolean());
            Assert.Equal(c.Label, r.GetProperty("label").GetString());
            for (int k = 0; k < QanaEdge.Model.Classes.Count; k++)
                Assert.Equal(Math.Round(c.Probabilities[k], 6), r.GetProperty("probabilities").GetProperty(QanaEdge.Model.Classes.Codes[k]).GetDouble(), 6);
            symmetrized += c.Symmetrized ? 1 : 0;
        }
        // The test model's random weights leave most views under 0.5, so the fallback must have run.
        Assert.True(symmetrized > 0, "no result ran the symmetry fallback");
    }

    // The subscriber's persistent session (its subscription, and the results queued for it while it is offline) lives
    // in the broker's persistence file; the daemon's part is to keep every result until the broker PUBACKs it. The
    // subscriber comes back only after the daemon has drained its whole outbox into the restarted broker: the order in
    // which a lost subscriber session used to lose results, so it is tested every time rather than by chance.
    [Fact]
    public async Task Broker_stopped_mid_run_and_restarted_every_result_is_delivered()
    {
        string[] images = TestEnv.RealImages(120, skip: 200);
        await using var sub = new ResultSubscriber(_broker.Port, "qana/devbr/results");
        await sub.ConnectAsync();
        await using var daemon = new DaemonRunner(_root, _broker.Port, "devbr", null, "--Qana:Mqtt:ReconnectMaxSeconds=0.5");
        await daemon.StartAsync();
        foreach (string image in images.Take(40)) TestEnv.Drop(image, daemon.Inbox);
        await TestEnv.WaitUntil(() => sub.Results.Count >= 10, TimeSpan.FromSeconds(30), "first results");

        _broker.Stop();
        Assert.True(File.Exists(_broker.PersistenceFile), "mosquitto saved no sessions on stop: the subscriber's queued results would be lost by the broker");
        // Captures keep being accepted while the broker is away: results queue in the outbox.
        foreach (string image in images.Skip(40)) TestEnv.Drop(image, daemon.Inbox);
        await TestEnv.WaitUntil(() => Directory.GetFiles(daemon.Inbox).Length == 0, TimeSpan.FromSeconds(180), "all captures stored while the broker is down");
        int beforeRestart = sub.Results.Count;
        _broker.Start();
        await TestEnv.WaitUntil(() => daemon.Store!.OutboxCount() == 0, TimeSpan.FromSeconds(180), "the daemon to drain its outbox into the restarted broker",
            () => $"outbox {daemon.Store!.OutboxCount()}");
        Assert.False(sub.IsConnected);
        Assert.Equal(beforeRestart, sub.Results.Count);
        await sub.ConnectAsync();

        await TestEnv.WaitUntil(() => sub.Results.Count >= images.Length, TimeSpan.FromSeconds(180), $"{images.Length} results after the restart",
            () => $"{sub.Results.Count} received, outbox {daemon.Store!.OutboxCount()}");
        Assert.Equal(images.Select(Sha).ToHashSet(), sub.Results.Values.Select(q => q.First().GetProperty("image_sha256").GetString()!).ToHashSet());
        // A redelivered result keeps its id: every copy of an id carries the same image hash.
        foreach (var copies in sub.Results.Values)
            Assert.Single(copies.Select(c => c.GetProperty("image_sha256").GetString()).Distinct());
        Assert.Empty(daemon.Log.At(Serilog.Events.LogEventLevel.Error));
    }

    // A broker that stops answering without closing its sockets (SIGSTOP: the kernel even completes new TCP
    // handshakes) is what a hung broker or a half-open link looks like. MQTTnet puts no bound on a PUBACK or CONNACK
    // when it is given a cancellable token, so without the link's own timeout the drain would wait on it for ever.
    [Fact]
    public async Task Broker_frozen_mid_run_publishes_time_out_and_every_result_is_delivered_once_it_thaws()
    {
        string[] images = TestEnv.RealImages(60, skip: 330);
        await using var sub = new ResultSubscriber(_broker.Port, "qana/devfz/results");
        await sub.ConnectAsync();
        await using var daemon = new DaemonRunner(_root, _broker.Port, "devfz", null,
            "--Qana:Mqtt:TimeoutSeconds=1", "--Qana:Mqtt:ReconnectMaxSeconds=0.5");
        await daemon.StartAsync();
        foreach (string image in images.Take(20)) TestEnv.Drop(image, daemon.Inbox);
        await TestEnv.WaitUntil(() => sub.Results.Count >= 5, TimeSpan.FromSeconds(60), "first results");

        _broker.Freeze();
        foreach (string image in images.Skip(20)) TestEnv.Drop(image, daemon.Inbox);
        await TestEnv.WaitUntil(() => Directory.GetFiles(daemon.Inbox).Length == 0, TimeSpan.FromSeconds(180), "all captures stored while the broker is frozen");
        await TestEnv.WaitUntil(() => daemon.Log.Events.Any(e => e.Message.Contains("retired: no PUBACK", StringComparison.Ordinal)),
            TimeSpan.FromSeconds(60), "the link to give up on the frozen connection");
        _broker.Thaw();
        // A subscriber frozen out longer than its keep-alive has dropped; its persistent session kept what is queued.
        if (!sub.IsConnected) await sub.ConnectAsync();

        await TestEnv.WaitUntil(() => sub.Results.Count >= images.Length, TimeSpan.FromSeconds(180), $"{images.Length} results after the thaw",
            () => $"{sub.Results.Count} received, outbox {daemon.Store!.OutboxCount()}");
        Assert.Equal(images.Select(Sha).ToHashSet(), sub.Results.Values.Select(q => q.First().GetProperty("image_sha256").GetString()!).ToHashSet());
        foreach (var copies in sub.Results.Values)
            Assert.Single(copies.Select(c => c.GetProperty("image_sha256").GetString()).Distinct());
        await TestEnv.WaitUntil(() => daemon.Store!.OutboxCount() == 0, TimeSpan.FromSeconds(30), "the outbox to drain");
        Assert.Empty(daemon.Log.At(Serilog.Events.LogEventLevel.Error));
    }

    [Fact]
    public async Task Corrupt_files_are_quarantined_with_reasons_and_good_ones_still_pass()
    {
        await using var sub = new ResultSubscriber(_broker.Port, "qana/devq/results");
        await sub.ConnectAsync();
        await using var daemon = new DaemonRunner(_root, _broker.Port, "devq");
        await daemon.StartAsync();
        byte[] good = File.ReadAllBytes(TestEnv.RealImages(1, skip: 400)[0]);
        TestEnv.DropBytes(good[..(good.Length / 3)], daemon.Inbox, "truncated.jpg");
        TestEnv.DropBytes(Encoding.ASCII.GetBytes("this is not an image at all, just text"), daemon.Inbox, "notes.jpg");
        TestEnv.DropBytes([], daemon.Inbox, "empty.jpg");
        TestEnv.DropBytes(good, daemon.Inbox, "good.jpg");

        string[] rejected = ["truncated.jpg", "notes.jpg", "empty.jpg"];
        // A capture's .reason is written before the capture is moved beside it, and the good image's result goes out
        // while its file is still being moved to done/: wait for the captures themselves and for the inbox to empty.
        await TestEnv.WaitUntil(() => Directory.Exists(daemon.QuarantineDir) && Directory.GetFiles(daemon.QuarantineDir, "*.reason").Length == 3
            && rejected.All(name => File.Exists(Path.Combine(daemon.QuarantineDir, name))), TimeSpan.FromSeconds(30), "three quarantined files");
        await TestEnv.WaitUntil(() => sub.Results.Count == 1 && Directory.GetFiles(daemon.Inbox).Length == 0, TimeSpan.FromSeconds(30),
            "the good image's result and an empty inbox");
        foreach (string name in rejected)
        {
            Assert.True(File.Exists(Path.Combine(daemon.QuarantineDir, name)), name);
            string reason = File.ReadAllText(Path.Combine(daemon.QuarantineDir, name + ".reason"));
            Assert.Matches("^reason: [A-Za-z]+\nmessage: .+\nsha256: [0-9a-f-]+", reason);
        }
        Assert.StartsWith("reason: Empty", File.ReadAllText(Path.Combine(daemon.QuarantineDir, "empty.jpg.reason")));
        Assert.Empty(Directory.GetFiles(daemon.Inbox));
    }

    /// <summary>Folders given with a trailing '/' (as a shell's completion writes them) work like those without.</summary>
    [Fact]
    public async Task An_inbox_and_state_folder_given_with_a_trailing_slash_are_watched_and_used()
    {
        string[] images = TestEnv.RealImages(3, skip: 950);
        await using var sub = new ResultSubscriber(_broker.Port, "qana/devsl/results");
        await sub.ConnectAsync();
        string inbox = Path.Combine(_root, "inbox"), state = Path.Combine(_root, "state");
        await using var daemon = new DaemonRunner(_root, _broker.Port, "devsl", null, $"--Qana:Inbox={inbox}/", $"--Qana:StateDir={state}//");
        await daemon.StartAsync();
        foreach (string image in images) TestEnv.Drop(image, inbox);
        await TestEnv.WaitUntil(() => sub.Results.Count >= images.Length && Directory.GetFiles(inbox).Length == 0, TimeSpan.FromSeconds(60), "three results");
        Assert.Equal(images.Select(Sha).ToHashSet(), Directory.GetFiles(Path.Combine(state, "done")).Select(Sha).ToHashSet());
    }

    /// <summary>
    /// Under a byte bound of about one of these JPEGs (13–25 kB) the inbox goes through one capture at a time and every
    /// capture still gets its result: each worker gives its capture's bytes back, or the queue would stop admitting.
    /// </summary>
    [Fact]
    public async Task A_small_queue_byte_bound_slows_the_inbox_but_loses_nothing()
    {
        string[] images = TestEnv.RealImages(24, skip: 960);
        await using var sub = new ResultSubscriber(_broker.Port, "qana/devqb/results");
        await sub.ConnectAsync();
        await using var daemon = new DaemonRunner(_root, _broker.Port, "devqb", null, "--Qana:QueueBytes=20000", "--Qana:Workers=2");
        await daemon.StartAsync();
        foreach (string image in images) TestEnv.Drop(image, daemon.Inbox);

        await TestEnv.WaitUntil(() => sub.Results.Count >= images.Length && Directory.GetFiles(daemon.Inbox).Length == 0,
            TimeSpan.FromSeconds(120), "24 results under a 20 kB queue");
        Assert.Equal(images.Select(Sha).ToHashSet(), Directory.GetFiles(daemon.DoneDir).Select(Sha).ToHashSet());
    }

    [Fact]
    public async Task Same_image_twice_keeps_one_result_id_and_feedback_is_stored()
    {
        await using var sub = new ResultSubscriber(_broker.Port, "qana/devf/#");
        await sub.ConnectAsync();
        string trust = Path.Combine(_root, "trust");
        Directory.CreateDirectory(trust);
        using var vendor = SigningKey.Generate(SignerRole.Vendor);
        using var stranger = SigningKey.Generate(SignerRole.Vendor);
        File.WriteAllText(Path.Combine(trust, "vendor.pub"), vendor.PublicKey.ToText());
        await using var daemon = new DaemonRunner(_root, _broker.Port, "devf", null, $"--Qana:TrustDir={trust}");
        await daemon.StartAsync();
        string image = TestEnv.RealImages(1, skip: 401)[0];
        TestEnv.Drop(image, daemon.Inbox, "a.jpg");
        await TestEnv.WaitUntil(() => sub.Results.Count == 1, TimeSpan.FromSeconds(30), "first result");
        TestEnv.Drop(image, daemon.Inbox, "b.jpg");
        await TestEnv.WaitUntil(() => Directory.GetFiles(daemon.Inbox).Length == 0 && File.Exists(Path.Combine(daemon.DoneDir, "b.jpg")), TimeSpan.FromSeconds(30), "duplicate acknowledged");
        await Task.Delay(300);
        Assert.Single(sub.Results);
        string resultId = sub.Results.Keys.Single();

        await sub.PublishAsync("qana/devf/feedback", Encoding.UTF8.GetBytes($$"""{"result_id":"{{resultId}}","label":"mel","clinician":"dr-a","lesion_id":"HAM_0000118"}"""));
        await sub.PublishAsync("qana/devf/feedback", Encoding.UTF8.GetBytes("""{"result_id":"x","label":"cancer"}"""));
        byte[] package = PackageWriter.ToBytes(TestGraphs.QanaShaped(8));
        await sub.PublishAsync("qana/fleet/updates", Encoding.UTF8.GetBytes("not a package"));
        await sub.PublishAsync("qana/devf/updates", PackageSigner.Sign(package, stranger));
        await sub.PublishAsync("qana/devf/updates", PackageSigner.Sign(package, vendor));
        await TestEnv.WaitUntil(() => daemon.Store!.FeedbackCount() >= 1 && daemon.Store.UpdateLog().Count >= 3, TimeSpan.FromSeconds(10), "feedback and update log");
        await Task.Delay(200);
        // The malformed label was refused, the valid one stored against the known result, with the lesion it names (the
        // readout learner keeps the images of one lesion on one side of its check).
        Assert.Equal(1, daemon.Store!.FeedbackCount());
        LabelledCase labelled = Assert.Single(daemon.Store.LabelledCases(ReadoutUpdates.BackboneDigest(PackageReader.Load(TestModel.Path_)), out _));
        Assert.Equal((resultId, "mel", "HAM_0000118"), (labelled.ResultId, labelled.Label, labelled.LesionId));
        var updates = daemon.Store.UpdateLog();
        Assert.Equal(3, updates.Count);
        Assert.Equal("refused", updates[0].Outcome);
        Assert.Equal("refused", updates[1].Outcome);
        Assert.Contains("trust", updates[1].Reason, StringComparison.OrdinalIgnoreCase);
        // Signed by a trusted key, but a model of another id than the one running: not applied (ModelUpdateTests has more).
        Assert.Equal("refused", updates[2].Outcome);
        Assert.Contains("another model", updates[2].Reason, StringComparison.Ordinal);
    }
}
