using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using QanaEdge.Daemon.Classification;
using QanaEdge.Daemon.Configuration;
using QanaEdge.Daemon.Learning;
using QanaEdge.Daemon.Messaging;
using QanaEdge.Daemon.Storage;
using QanaEdge.Daemon.Tests.Infrastructure;
using QanaEdge.Daemon.Updates;
using QanaEdge.Model.Packaging;
using QanaEdge.TestSupport;

namespace QanaEdge.Daemon.Tests;

/// <summary>
/// The on-device readout learner, end to end: the shipped model classifies real JPEGs, clinician labels arrive over a
/// real mosquitto, the daemon learns a readout from them, checks it on the labelled cases it did not learn from, and
/// applies, publishes and restores it (or records why not) — with the daemon's real LiteDB and state folder.
/// </summary>
public sealed class ReadoutLearningTests : IDisposable
{
    private static readonly string ShippedPath = Path.Combine(TestData.RepositoryRoot, "firmware-models", "qana-paper8-64.qana");
    private readonly MosquittoBroker _broker = new();
    private readonly string _root = TestEnv.TempDir("learning");

    public void Dispose()
    {
        _broker.Dispose();
        try { Directory.Delete(_root, recursive: true); } catch (IOException) { }
    }

    /// <summary>The daemon with the shipped model, learning first once <paramref name="minCases"/> labels are in.</summary>
    private DaemonRunner Daemon(string device, double learningRate, int minCases) =>
        new(_root, _broker.Port, device, null, $"--Qana:Model={ShippedPath}", $"--Qana:TrustDir={Path.Combine(_root, "trust")}",
            $"--Qana:Learning:MinCases={minCases}", "--Qana:Learning:NewCases=8", "--Qana:Learning:Epochs=100",
            $"--Qana:Learning:LearningRate={learningRate.ToString(System.Globalization.CultureInfo.InvariantCulture)}");

    /// <summary>The same model under another version (a vendor release that changes nothing else).</summary>
    private static ModelPackage WithVersion(ModelPackage package, string version)
    {
        System.Text.Json.Nodes.JsonNode manifest = JsonSerializer.SerializeToNode(package.Manifest)!;
        manifest["Version"] = version;
        return new ModelPackage { Manifest = manifest.Deserialize<ModelManifest>()!, Graph = package.Graph };
    }

    private static string Version(JsonElement result) => result.GetProperty("model").GetProperty("version").GetString()!;

    /// <summary>
    /// Drops the images, waits for their results, and labels each result with the class after the one the device
    /// reported (a clinic that systematically disagrees: the running readout is wrong on every such case, so a
    /// readout that learned anything from them is measurably better on the cases it did not learn from).
    /// </summary>
    private static async Task<string[]> ClassifyAndLabel(DaemonRunner daemon, ResultSubscriber sub, string[] images)
    {
        foreach (string image in images) TestEnv.Drop(image, daemon.Inbox);
        await TestEnv.WaitUntil(() => sub.Results.Count >= images.Length, TimeSpan.FromSeconds(120), "results of the images");
        var ids = sub.Results.Keys.Order(StringComparer.Ordinal).ToArray();
        foreach (string id in ids)
        {
            string predicted = sub.Results[id].First().GetProperty("label").GetString()!;
            string label = Model.Classes.Codes[(Model.Classes.IndexOf(predicted) + 1) % Model.Classes.Count];
            await sub.PublishAsync($"qana/{daemon.DeviceId}/feedback", Encoding.UTF8.GetBytes($$"""{"result_id":"{{id}}","label":"{{label}}","clinician":"dr-l"}"""));
        }
        await TestEnv.WaitUntil(() => daemon.Store!.FeedbackCount() >= ids.Length, TimeSpan.FromSeconds(30), "the labels to be stored");
        return ids;
    }

    [Fact]
    public async Task Labels_teach_a_readout_that_is_applied_published_signed_by_the_device_and_restored()
    {
        string[] images = TestEnv.RealImages(20, skip: 700);
        await using var sub = new ResultSubscriber(_broker.Port, "qana/devlearn/#");
        await sub.ConnectAsync();
        string stateDir;
        await using (var daemon = Daemon("devlearn", learningRate: 1e-2, minCases: 20))
        {
            await daemon.StartAsync();
            stateDir = daemon.StateDir;
            await ClassifyAndLabel(daemon, sub, images);
            await TestEnv.WaitUntil(() => daemon.Store!.LearningLog().Count >= 1, TimeSpan.FromSeconds(60), "a learning attempt",
                () => string.Join("; ", daemon.Log.Events.Select(e => e.Message)));
            LearningAttempt attempt = Assert.Single(daemon.Store!.LearningLog());
            Assert.True(attempt.Outcome == ReadoutLearning.Applied, attempt.Reason);
            Assert.Equal(20, attempt.Cases);
            // Per class, alternately learned and checked: both halves together are every labelled case.
            var halves = System.Text.RegularExpressions.Regex.Match(attempt.Reason, @"learned from (\d+) labelled cases, checked on (\d+)");
            Assert.True(halves.Success, attempt.Reason);
            Assert.Equal(20, int.Parse(halves.Groups[1].Value) + int.Parse(halves.Groups[2].Value));
            var update = Assert.Single(daemon.Store.UpdateLog());
            Assert.Equal(("learned", ModelUpdates.Applied), (update.Topic, update.Outcome));

            // The learned readout leaves the device: signed by the device's learner key, a readout update for the model it ran.
            await TestEnv.WaitUntil(() => sub.Messages.Any(m => m.Topic == "qana/devlearn/readouts"), TimeSpan.FromSeconds(30), "the learned readout on MQTT");
            byte[] published = sub.Messages.First(m => m.Topic == "qana/devlearn/readouts").Payload;
            var learner = TrustedKey.Load(Path.Combine(stateDir, "learner.pub"));
            Assert.Equal(SignerRole.Learner, learner.Role);
            VerificationResult verified = PackageVerifier.Verify(published, new TrustStore([learner]));
            Assert.True(verified.IsValid, verified.Reason);
            Assert.Equal(PackageKind.ReadoutUpdate, verified.Package!.Manifest.Kind);
            // Versioned below the vendor's next release (1.0.0 < 1.0.0.1 < 1.0.1), which must still count as newer.
            Assert.Equal(("1.0.0", "1.0.0.1"), (verified.Package.Manifest.BaseModelVersion, verified.Package.Manifest.Version));
            // The retained status carries the key's public half, so the fleet can verify without reaching the device.
            JsonElement status = sub.Messages.Where(m => m.Topic == "qana/devlearn/status").Select(m => JsonDocument.Parse(m.Payload).RootElement).Last();
            Assert.Equal(File.ReadAllText(Path.Combine(stateDir, "learner.pub")), status.GetProperty("learner_key").GetProperty("public").GetString());
            Assert.Equal(learner.KeyIdHex, status.GetProperty("learner_key").GetProperty("id").GetString());

            // Images classified from now on carry the learned version.
            string next = TestEnv.RealImages(1, skip: 760)[0];
            TestEnv.Drop(next, daemon.Inbox);
            await TestEnv.WaitUntil(() => sub.Results.Values.Any(q => Version(q.First()) == "1.0.0.1"), TimeSpan.FromSeconds(60), "a result of the learned readout");
        }

        // A restart restores the learned readout (verified with the device's learner key) and does not learn again
        // from the same labels.
        sub.Messages.Clear();
        await using (var again = Daemon("devlearn", learningRate: 1e-2, minCases: 20))
        {
            await again.StartAsync();
            Assert.Equal("1.0.0.1", again.Services.GetService(typeof(ModelAtStart)) is ModelAtStart m ? m.Active.Provider.ModelVersion : "");
            await Task.Delay(500);
            Assert.Single(again.Store!.LearningLog());

            // The vendor's next release, 1.0.1 of the same model, is newer than the readout the device learned: applied.
            using var vendor = SigningKey.Generate(SignerRole.Vendor);
            Directory.CreateDirectory(Path.Combine(_root, "trust"));
            File.WriteAllText(Path.Combine(_root, "trust", "vendor.pub"), vendor.PublicKey.ToText());
            ModelPackage shipped = PackageReader.Load(ShippedPath);
            await sub.PublishAsync("qana/devlearn/updates", PackageSigner.Sign(PackageWriter.ToBytes(WithVersion(shipped, "1.0.1")), vendor));
            await TestEnv.WaitUntil(() => again.Store!.UpdateLog().Any(u => u.Topic != ResultStore.LearnedTopic), TimeSpan.FromSeconds(60), "the vendor release to be handled");
            var release = again.Store!.UpdateLog().Last(u => u.Topic != ResultStore.LearnedTopic);
            Assert.True(release.Outcome == ModelUpdates.Applied, release.Reason);
            Assert.Equal("1.0.1", ((ModelAtStart)again.Services.GetService(typeof(ModelAtStart))!).Active.Provider.ModelVersion);
            Assert.Empty(again.Log.At(Serilog.Events.LogEventLevel.Error));
        }
    }

    /// <summary>
    /// A learned readout is applied (persisted) before its message is queued. Stopped between the two — here the update
    /// log's record of it, written with the message in one transaction, is removed after the stop — the daemon finds
    /// the readout at its next start and publishes it then.
    /// </summary>
    [Fact]
    public async Task A_learned_readout_applied_but_not_queued_before_a_stop_is_published_at_the_next_start()
    {
        string[] images = TestEnv.RealImages(20, skip: 900);
        await using var sub = new ResultSubscriber(_broker.Port, "qana/devrecover/#");
        await sub.ConnectAsync();
        string stateDir;
        await using (var daemon = Daemon("devrecover", learningRate: 1e-2, minCases: 20))
        {
            await daemon.StartAsync();
            stateDir = daemon.StateDir;
            await ClassifyAndLabel(daemon, sub, images);
            await TestEnv.WaitUntil(() => daemon.Store!.LearningLog().Count >= 1, TimeSpan.FromSeconds(60), "a learning attempt");
            Assert.Equal(ReadoutLearning.Applied, daemon.Store!.LearningLog()[0].Outcome);
        }
        using (var db = new LiteDB.LiteDatabase(new LiteDB.ConnectionString { Filename = Path.Combine(stateDir, "qana.db"), Connection = LiteDB.ConnectionType.Direct }, new LiteDB.BsonMapper()))
        {
            Assert.Equal(1, db.GetCollection("updates").DeleteMany(LiteDB.Query.EQ("topic", ResultStore.LearnedTopic)));
            db.GetCollection("outbox").DeleteAll();
        }
        string applied = Assert.Single(Directory.GetFiles(Path.Combine(stateDir, "models"), "*.qana"));
        sub.Messages.Clear();

        await using var again = Daemon("devrecover", learningRate: 1e-2, minCases: 20);
        await again.StartAsync();
        await TestEnv.WaitUntil(() => sub.Messages.Any(m => m.Topic == "qana/devrecover/readouts"), TimeSpan.FromSeconds(30), "the learned readout published after the restart");
        Assert.Equal(File.ReadAllBytes(applied), sub.Messages.First(m => m.Topic == "qana/devrecover/readouts").Payload);
        var logged = Assert.Single(again.Store!.UpdateLog());
        Assert.Equal((ResultStore.LearnedTopic, ModelUpdates.Applied), (logged.Topic, logged.Outcome));
        Assert.Contains("queued at the next start", logged.Reason, StringComparison.Ordinal);
        Assert.Empty(again.Log.At(Serilog.Events.LogEventLevel.Error));
    }

    [Fact]
    public async Task A_readout_that_gains_nothing_on_the_checked_cases_is_not_kept_and_the_model_stays()
    {
        // A learning rate too small to move any weight by one quantization step: the learned readout is the running one.
        string[] images = TestEnv.RealImages(16, skip: 800);
        await using var sub = new ResultSubscriber(_broker.Port, "qana/devnolearn/#");
        await sub.ConnectAsync();
        await using var daemon = Daemon("devnolearn", learningRate: 1e-7, minCases: 16);
        await daemon.StartAsync();
        await ClassifyAndLabel(daemon, sub, images);
        await TestEnv.WaitUntil(() => daemon.Store!.LearningLog().Count >= 1, TimeSpan.FromSeconds(60), "a learning attempt");
        LearningAttempt attempt = Assert.Single(daemon.Store!.LearningLog());
        Assert.True(attempt.Outcome == ReadoutLearning.NotKept, attempt.Reason);
        Assert.Contains("gains nothing", attempt.Reason, StringComparison.Ordinal);
        Assert.Empty(daemon.Store.UpdateLog());
        Assert.DoesNotContain(sub.Messages, m => m.Topic == "qana/devnolearn/readouts");
        Assert.False(Directory.Exists(Path.Combine(daemon.StateDir, "models")) && Directory.GetFiles(Path.Combine(daemon.StateDir, "models")).Length > 0);
    }

    /// <summary>
    /// A round whose learning diverges is recorded with its reason and logged once as a warning; nothing is applied,
    /// published or stored as an update, the model keeps classifying, the labelled cases stay, and the next round learns
    /// again. The options refuse a step size above 1, at which the learner's outputs saturate rather than overflow, so
    /// the test hands the learner its options directly, with a step size of 1e30 that overflows the head in the first
    /// pass; the cases are the shipped model's head inputs of real JPEGs, as its workers store them.
    /// </summary>
    [Fact]
    public void A_round_whose_learning_diverges_is_recorded_applies_nothing_and_the_next_round_learns_again()
    {
        using var rig = new LearningRig(_root);
        var (active, state, key, updates, store) = rig;
        var log = new LogCollector();
        using ILoggerFactory loggers = new Serilog.Extensions.Logging.SerilogLoggerFactory(Hosting.Logging.Create(extraSink: log), dispose: true);
        using IImageClassifier classifier = active.Provider.CreateClassifier();

        // Each result labelled with the class after the one reported, as a clinic that disagrees would.
        void ClassifyAndLabel(string[] images)
        {
            foreach (string image in images)
            {
                byte[] bytes = File.ReadAllBytes(image);
                var c = classifier.Classify(bytes);
                string id = Path.GetFileNameWithoutExtension(image);
                // Each image under its own hash, as the pipeline stores it: the store keeps one result per image.
                store.Commit([new StoredResult(id, Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(bytes)), c.Label, c.Confidence, c.Refer, c.Tiled, classifier.ModelId,
                    classifier.ModelVersion, c.LatencyMs, null, DateTime.UtcNow, "inbox", Encoding.UTF8.GetBytes("{}"), 0, c.HeadInput, classifier.Backbone)],
                    "qana/devdiverge/results");
                string label = Model.Classes.Codes[(Model.Classes.IndexOf(c.Label) + 1) % Model.Classes.Count];
                Assert.True(store.AddFeedback(id, label, "dr-d", null, "{}"));
            }
        }
        ReadoutLearning Learning(double learningRate) => new(
            new LearningOptions { MinCases = 16, NewCases = 8, Epochs = 10, LearningRate = learningRate }, store, active, updates, key,
            "qana/devdiverge/readouts", loggers.CreateLogger<ReadoutLearning>());

        ClassifyAndLabel(TestEnv.RealImages(16, skip: 1000));
        int outbox = store.OutboxCount();
        LearningAttempt? diverged = Learning(1e30).Attempt();

        Assert.NotNull(diverged);
        Assert.True(diverged.Outcome == ReadoutLearning.Diverged, diverged.Reason);
        Assert.Equal(16, diverged.Cases);
        Assert.Matches(@"^learned from \d+ labelled cases: training diverged in the readout phase at pass \d+, batch \d+ \(.+\): " +
            @"a smaller learning rate may avoid it \(.*Qana:Learning:LearningRate\)$", diverged.Reason);
        Assert.Equal(diverged, Assert.Single(store.LearningLog()) with { At = diverged.At });
        string warning = Assert.Single(log.At(Serilog.Events.LogEventLevel.Warning));
        Assert.Contains("not learned", warning, StringComparison.Ordinal);
        Assert.Contains("Qana:Learning:LearningRate", warning, StringComparison.Ordinal);
        Assert.Empty(log.At(Serilog.Events.LogEventLevel.Error));
        // Nothing applied, stored as an update or queued for publishing; the model still runs and classifies.
        Assert.Empty(store.UpdateLog());
        Assert.Equal(outbox, store.OutboxCount());
        Assert.False(Directory.Exists(Path.Combine(state, "models")) && Directory.EnumerateFileSystemEntries(Path.Combine(state, "models")).Any());
        Assert.Equal("1.0.0", active.Provider.ModelVersion);
        Assert.Equal("1.0.0", classifier.ModelVersion);
        // The labelled cases stay for the next round, which is due after NewCases more labels like after any attempt.
        Assert.Equal(16, store.LabelledCases(active.Provider.Backbone!, out _).Count);
        Assert.Null(Learning(1e30).Attempt());

        ClassifyAndLabel(TestEnv.RealImages(8, skip: 1016));
        LearningAttempt? next = Learning(1e-2).Attempt();
        Assert.NotNull(next);
        Assert.Equal(24, next.Cases);
        Assert.NotEqual(ReadoutLearning.Diverged, next.Outcome);
        Assert.Equal(2, store.LearningLog().Count);
    }

    /// <summary>
    /// What a learning round run in the test process needs, made the one way the tests here make it: the model running
    /// (the shipped one unless given, on the managed engine) as the active model, a state folder under
    /// <paramref name="root"/> whose updates the learner's own key is trusted for, and the store in it.
    /// </summary>
    private sealed class LearningRig : IDisposable
    {
        public ActiveModel Active { get; }
        public string State { get; }
        public SigningKey Key { get; }
        public ModelUpdates Updates { get; }
        public ResultStore Store { get; }

        public LearningRig(string root, ModelPackage? model = null)
        {
            var choice = new EngineChoice(false, "managed integer engine");
            Active = new ActiveModel(ClassifierFactory.Create(model ?? PackageReader.Load(ShippedPath), ShippedPath, choice), "test");
            State = Directory.CreateDirectory(Path.Combine(root, "state")).FullName;
            Key = SigningKey.Generate(SignerRole.Learner);
            Updates = new ModelUpdates(new ModelAtStart(Active, AppliedUpdates.State.None, null), State,
                new DeviceTrust(Path.Combine(root, "trust"), Key.PublicKey), choice, NullLogger<ModelUpdates>.Instance);
            Store = new ResultStore(Path.Combine(State, "qana.db"));
        }

        public void Deconstruct(out ActiveModel active, out string state, out SigningKey key, out ModelUpdates updates, out ResultStore store) =>
            (active, state, key, updates, store) = (Active, State, Key, Updates, Store);

        /// <summary>In the order the tests' using declarations released them: the store, the key, the model.</summary>
        public void Dispose()
        {
            Store.Dispose();
            Key.Dispose();
            Active.Dispose();
        }
    }

    /// <summary>
    /// Real JPEGs classified by the running model and stored as its workers store them (with their head inputs), each
    /// labelled with the class after the one reported, as a clinic that disagrees would.
    /// </summary>
    private static void StoreLabelled(ResultStore store, ActiveModel active, string[] images, string topic)
    {
        using IImageClassifier classifier = active.Provider.CreateClassifier();
        foreach (string image in images)
        {
            byte[] bytes = File.ReadAllBytes(image);
            var c = classifier.Classify(bytes);
            string id = Path.GetFileNameWithoutExtension(image);
            // Each under its own image's hash, as the pipeline stores it: the store keeps one result per image.
            store.Commit([new StoredResult(id, Convert.ToHexStringLower(SHA256.HashData(bytes)), c.Label, c.Confidence, c.Refer, c.Tiled, classifier.ModelId,
                classifier.ModelVersion, c.LatencyMs, null, DateTime.UtcNow, "inbox", Encoding.UTF8.GetBytes("{}"), 0, c.HeadInput, classifier.Backbone)],
                topic);
            Assert.True(store.AddFeedback(id, Model.Classes.Codes[(Model.Classes.IndexOf(c.Label) + 1) % Model.Classes.Count], "dr-l", null, "{}"));
        }
    }

    /// <summary>
    /// A running model whose version ends its learned line (counter <see cref="long.MaxValue"/>; here a configured
    /// package, since updates of such a version are refused), or whose learned version would end it (the last version
    /// the learned line reaches, counter <see cref="long.MaxValue"/> − 2), leaves a learned readout no version that could
    /// be applied. The round is recorded as unusable with that reason and nothing is learned or applied. The next
    /// learned version used to overflow to 1.0.0.-9223372036854775808, and the round learned a readout only for the
    /// update check to refuse it.
    /// </summary>
    [Theory]
    [InlineData("1.0.0.9223372036854775807")]
    [InlineData("1.0.0.9223372036854775805")]
    public void A_running_version_at_the_end_of_the_learned_line_makes_the_round_unusable_not_an_error(string version)
    {
        ModelPackage last = WithVersion(PackageReader.Load(ShippedPath), version);
        using var rig = new LearningRig(_root, last);
        var (active, _, key, updates, store) = rig;
        StoreLabelled(store, active, TestEnv.RealImages(16, skip: 1060), "qana/devend/results");
        var learning = new ReadoutLearning(new LearningOptions { MinCases = 16, NewCases = 8, Epochs = 10, LearningRate = 1e-3 }, store, active, updates, key,
            "qana/devend/readouts", NullLogger<ReadoutLearning>.Instance);

        LearningAttempt? attempt = learning.Attempt();

        Assert.NotNull(attempt);
        Assert.True(attempt.Outcome == ReadoutLearning.Unusable, $"{attempt.Outcome}: {attempt.Reason}");
        Assert.Contains("leaves no learned version above it", attempt.Reason, StringComparison.Ordinal);
        Assert.Equal(attempt, Assert.Single(store.LearningLog()) with { At = attempt.At });
        Assert.Empty(store.UpdateLog());
        Assert.Equal(version, active.Provider.ModelVersion);
    }

    /// <summary>
    /// A model whose id is as long as the format allows (256 characters) learns like any other. The readout update's id
    /// was the model's with <c>-readout</c>, past the limit, so measuring the running readout (as a package of its own)
    /// threw the validator's error out of the attempt, after the whole round of training: nothing went into the
    /// learning log, and every later label trained and failed again.
    /// </summary>
    [Fact]
    public void A_model_with_an_id_of_the_longest_valid_length_learns_a_readout()
    {
        System.Text.Json.Nodes.JsonNode manifest = JsonSerializer.SerializeToNode(PackageReader.Load(ShippedPath).Manifest)!;
        string id = new('q', 256);
        manifest["ModelId"] = id;
        var model = new ModelPackage { Manifest = manifest.Deserialize<ModelManifest>()!, Graph = PackageReader.Load(ShippedPath).Graph };
        PackageValidator.Validate(model);
        using var rig = new LearningRig(_root, model);
        var (active, _, key, updates, store) = rig;
        StoreLabelled(store, active, TestEnv.RealImages(16, skip: 1100), "qana/devlongid/results");
        var learning = new ReadoutLearning(new LearningOptions { MinCases = 16, NewCases = 8, Epochs = 10, LearningRate = 1e-2 }, store, active, updates, key,
            "qana/devlongid/readouts", NullLogger<ReadoutLearning>.Instance);

        LearningAttempt? attempt = learning.Attempt();

        Assert.NotNull(attempt);
        Assert.Equal(attempt, Assert.Single(store.LearningLog()) with { At = attempt.At });
        Assert.True(attempt.Outcome == ReadoutLearning.Applied, $"{attempt.Outcome}: {attempt.Reason}");
        Assert.Equal(id, active.Provider.Package.Manifest.ModelId);
        Assert.Equal("1.0.0.1", active.Provider.ModelVersion);
    }

    /// <summary>
    /// A learned head the engine will not prepare: with a step size of 1e12 (handed to the learner directly, as the
    /// options stop at 1) the head stays finite, since the learner reads its outputs through the int8 clamp, but its
    /// weights grow so large that the head's requantization multiplier cannot be represented. The package validation
    /// refuses that head when the update is made (before, it accepted it and the engine refused it when the update's
    /// golden vectors were recorded). The round is recorded as refused with the reason and logged once as a warning; nothing is applied, stored or published, and
    /// the model keeps running. It used to escape the attempt as an error with a stack trace, with no entry in the
    /// learning log. The cases are the shipped model's head inputs of real JPEGs, as its workers store them.
    /// </summary>
    [Fact]
    public void A_learned_readout_the_engine_cannot_prepare_is_recorded_as_a_refused_attempt()
    {
        using var rig = new LearningRig(_root);
        var (active, state, key, updates, store) = rig;
        var log = new LogCollector();
        using ILoggerFactory loggers = new Serilog.Extensions.Logging.SerilogLoggerFactory(Hosting.Logging.Create(extraSink: log), dispose: true);
        StoreLabelled(store, active, TestEnv.RealImages(16, skip: 1040), "qana/devprep/results");
        int outbox = store.OutboxCount();
        var learning = new ReadoutLearning(new LearningOptions { MinCases = 16, NewCases = 8, Epochs = 10, LearningRate = 1e12 }, store, active, updates, key,
            "qana/devprep/readouts", loggers.CreateLogger<ReadoutLearning>());

        LearningAttempt? attempt = learning.Attempt();

        Assert.NotNull(attempt);
        Assert.True(attempt.Outcome == ReadoutLearning.Refused, $"{attempt.Outcome}: {attempt.Reason}");
        Assert.Matches(@"^learned from \d+ labelled cases: the learned readout is not a valid package: .*requantization multiplier .* is too large for the integer engine", attempt.Reason);
        Assert.Equal(attempt, Assert.Single(store.LearningLog()) with { At = attempt.At });
        Assert.Contains("cannot run", Assert.Single(log.At(Serilog.Events.LogEventLevel.Warning)), StringComparison.Ordinal);
        Assert.Empty(log.At(Serilog.Events.LogEventLevel.Error));
        Assert.Empty(store.UpdateLog());
        Assert.Equal(outbox, store.OutboxCount());
        Assert.False(Directory.Exists(Path.Combine(state, "models")) && Directory.EnumerateFileSystemEntries(Path.Combine(state, "models")).Any());
        Assert.Equal("1.0.0", active.Provider.ModelVersion);
        Assert.Equal(16, store.LabelledCases(active.Provider.Backbone!, out _).Count);
    }

    /// <summary>
    /// The learned and checked halves: per class, lesions alternate between them in the order their labels came, and
    /// every image of a lesion goes where its first went; a case without a lesion id is a lesion of its own.
    /// </summary>
    [Fact]
    public void Split_alternates_lesions_per_class_and_keeps_each_lesion_on_one_side()
    {
        (sbyte[], int)[] cases = [.. Enumerable.Range(0, 9).Select(i => (new[] { (sbyte)i }, i < 7 ? 0 : 1))];
        string?[] lesions = ["A", "A", "B", "C", "B", null, "A", "D", "E"];
        var (learn, check) = ReadoutLearning.Split(cases, 2, lesions);
        // Class 0: A learns (cases 0, 1, 6), B is checked (2, 4), C learns (3), the unnamed case 5 is checked; class 1: D learns, E is checked.
        Assert.Equal([0, 1, 3, 6, 7], learn.Select(c => (int)c.Input[0]));
        Assert.Equal([2, 4, 5, 8], check.Select(c => (int)c.Input[0]));

        // Without lesion ids every case alternates on its own, as before labels named lesions.
        var (learnAlone, checkAlone) = ReadoutLearning.Split(cases, 2);
        Assert.Equal([0, 2, 4, 6, 7], learnAlone.Select(c => (int)c.Input[0]));
        Assert.Equal([1, 3, 5, 8], checkAlone.Select(c => (int)c.Input[0]));
        Assert.Throws<ArgumentException>(() => ReadoutLearning.Split(cases, 2, lesions[..3]));
    }

    [Fact]
    public void Feedback_names_the_lesion_optionally()
    {
        Assert.True(Payloads.TryParseFeedback("""{"result_id":"r1","label":"MEL","lesion_id":"HAM_0000118"}"""u8, out string id, out string label, out _, out _, out string? lesion, out _));
        Assert.Equal(("r1", "mel", "HAM_0000118"), (id, label, lesion));
        Assert.True(Payloads.TryParseFeedback("""{"result_id":"r1","label":"nv","lesion_id":" "}"""u8, out _, out _, out _, out _, out lesion, out _));
        Assert.Null(lesion);
        Assert.False(Payloads.TryParseFeedback("""{"result_id":"r1","label":"mole"}"""u8, out _, out _, out _, out _, out _, out string error));
        Assert.Contains("not one of", error, StringComparison.Ordinal);
    }
}
