using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.Extensions.Logging.Abstractions;
using QanaEdge.Daemon.Classification;
using QanaEdge.Daemon.Tests.Infrastructure;
using QanaEdge.Daemon.Updates;
using QanaEdge.Imaging;
using QanaEdge.Model.Graph;
using QanaEdge.Model.Packaging;
using QanaEdge.Runtime;
using QanaEdge.TestSupport;

namespace QanaEdge.Daemon.Tests;

/// <summary>
/// Signed readout updates sent to the daemon over a real mosquitto, with the shipped model, real JPEGs and the
/// daemon's real LiteDB and state folder: applied (and still running after a restart), refused with their reasons,
/// swapped in while captures flow, and a damaged applied update at start.
/// </summary>
public sealed class ModelUpdateTests : IDisposable
{
    private static readonly string ShippedPath = Path.Combine(TestData.RepositoryRoot, "firmware-models", "qana-paper8-64.qana");
    private static readonly ModelPackage Shipped = PackageReader.Load(ShippedPath);
    private readonly MosquittoBroker _broker = new();
    private readonly string _root = TestEnv.TempDir("updates");
    private readonly string _trust;
    // The vendor's key: it may sign readout updates of any newer version (a learner key only those of its learned line).
    private readonly SigningKey _vendor = SigningKey.Generate(SignerRole.Vendor);

    public ModelUpdateTests()
    {
        _trust = Path.Combine(_root, "trust");
        Directory.CreateDirectory(_trust);
        File.WriteAllText(Path.Combine(_trust, "vendor.pub"), _vendor.PublicKey.ToText());
    }

    public void Dispose()
    {
        _vendor.Dispose();
        _broker.Dispose();
        try { Directory.Delete(_root, recursive: true); } catch (IOException) { }
    }

    private DaemonRunner Daemon(string device) =>
        new(_root, _broker.Port, device, null, $"--Qana:Model={ShippedPath}", $"--Qana:TrustDir={_trust}");

    /// <summary>
    /// A readout update for <paramref name="model"/> whose head predicts class k+1's score as class k (rows rotated), so
    /// its results differ visibly from the model's; its golden vectors are random head inputs with the new head's
    /// logits, recorded by the reference kernels on the update's graph (<paramref name="breakGolden"/> changes one).
    /// </summary>
    internal static ModelPackage Readout(ModelPackage model, string version, bool breakGolden = false)
    {
        Node head = ReadoutUpdates.Head(model);
        int classes = head.Bias!.Length, inputs = head.Weights!.Length / classes;
        var weights = new sbyte[head.Weights.Length];
        var bias = new int[classes];
        var scales = (double[])head.WeightScales!.Clone();
        for (int k = 0; k < classes; k++)
        {
            int from = (k + 1) % classes;
            Array.Copy(head.Weights, from * inputs, weights, k * inputs, inputs);
            bias[k] = head.Bias[from];
            if (scales.Length > 1) scales[k] = head.WeightScales[from];
        }
        return WithGolden(model, version, weights, scales, bias, breakGolden);
    }

    /// <summary>
    /// A readout update with this head, carrying four golden vectors: random head inputs with the logits the reference
    /// kernels give them on the update's own graph (<paramref name="breakGolden"/> changes one).
    /// </summary>
    internal static ModelPackage WithGolden(ModelPackage model, string version, sbyte[] weights, double[] scales, int[] bias, bool breakGolden = false)
    {
        ModelPackage plain = ReadoutUpdates.Create(model, version, weights, scales, bias);
        GoldenVector[] golden = GoldenVectors.Record(plain, Enumerable.Range(1, 4).Select(seed => TestGraphs.RandomInput(plain, seed)));
        if (breakGolden) golden[0].ExpectedLogits[0] = (sbyte)(golden[0].ExpectedLogits[0] ^ 1);
        return ReadoutUpdates.Create(model, version, weights, scales, bias, golden: golden);
    }

    private byte[] Signed(ModelPackage package) => PackageSigner.Sign(PackageWriter.ToBytes(package), _vendor);

    /// <summary>The last "online" status received (the "offline" one a stopping daemon leaves names no model).</summary>
    private static JsonElement LastStatus(ResultSubscriber sub, string device) =>
        sub.Messages.Where(m => m.Topic == $"qana/{device}/status").Select(m => JsonDocument.Parse(m.Payload).RootElement)
            .Last(s => s.GetProperty("state").GetString() == "online");

    private static string StatusVersion(ResultSubscriber sub, string device) =>
        sub.Messages.Where(m => m.Topic == $"qana/{device}/status").Select(m => JsonDocument.Parse(m.Payload).RootElement)
            .LastOrDefault(s => s.GetProperty("state").GetString() == "online") is { ValueKind: JsonValueKind.Object } s
            ? s.GetProperty("model").GetProperty("version").GetString()! : "";

    private static string Sha(string file) => Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(file)));

    /// <summary>Each result equals a direct classification of its image by the model its version names.</summary>
    private static void AssertMadeBy(IEnumerable<JsonElement> results, IReadOnlyDictionary<string, string> imageBySha, IReadOnlyDictionary<string, ModelPackage> models)
    {
        var classifiers = models.ToDictionary(m => m.Key, m => new LesionImageClassifier(m.Value, LesionClassifier.CreateEngine(m.Value)));
        try
        {
            foreach (JsonElement r in results)
            {
                string version = r.GetProperty("model").GetProperty("version").GetString()!;
                Assert.True(classifiers.ContainsKey(version), $"result of unknown model version {version}");
                Classification.Classification direct = classifiers[version].Classify(File.ReadAllBytes(imageBySha[r.GetProperty("image_sha256").GetString()!]));
                Assert.Equal(direct.Label, r.GetProperty("label").GetString());
                for (int k = 0; k < QanaEdge.Model.Classes.Count; k++)
                    Assert.Equal(Math.Round(direct.Probabilities[k], 6), r.GetProperty("probabilities").GetProperty(QanaEdge.Model.Classes.Codes[k]).GetDouble(), 6);
            }
        }
        finally { foreach (var c in classifiers.Values) c.Dispose(); }
    }

    [Fact]
    public async Task Signed_readout_update_is_applied_published_and_survives_a_restart()
    {
        ModelPackage update = Readout(Shipped, "1.0.1");
        ModelPackage patched = ReadoutUpdates.Apply(Shipped, update);
        byte[] signed = Signed(update);
        string[] images = TestEnv.RealImages(8, skip: 600);
        var bySha = images.ToDictionary(Sha);
        await using var sub = new ResultSubscriber(_broker.Port, "qana/devup/#");
        await sub.ConnectAsync();
        await using (var daemon = Daemon("devup"))
        {
            await daemon.StartAsync();
            foreach (string image in images.Take(4)) TestEnv.Drop(image, daemon.Inbox);
            await TestEnv.WaitUntil(() => sub.Results.Count >= 4, TimeSpan.FromSeconds(120), "results of the shipped model");
            Assert.Contains("configured model", LastStatus(sub, "devup").GetProperty("model_source").GetString());

            await sub.PublishAsync("qana/devup/updates", signed);
            await TestEnv.WaitUntil(() => daemon.Store!.UpdateLog().Count == 1, TimeSpan.FromSeconds(60), "the update to be handled");
            var logged = daemon.Store!.UpdateLog()[0];
            Assert.True(logged.Outcome == ModelUpdates.Applied, logged.Reason);
            await TestEnv.WaitUntil(() => StatusVersion(sub, "devup") == "1.0.1", TimeSpan.FromSeconds(30), "the status to name 1.0.1");
            Assert.Contains("applied update: readout update", LastStatus(sub, "devup").GetProperty("model_source").GetString());
            Assert.True(LastStatus(sub, "devup").GetProperty("model").GetProperty("id").GetString() == Shipped.Manifest.ModelId);

            foreach (string image in images.Skip(4)) TestEnv.Drop(image, daemon.Inbox);
            await TestEnv.WaitUntil(() => sub.Results.Count >= 8, TimeSpan.FromSeconds(120), "results after the update");

            // The same bytes again change nothing and say so.
            await sub.PublishAsync("qana/fleet/updates", signed);
            await TestEnv.WaitUntil(() => daemon.Store!.UpdateLog().Count == 2, TimeSpan.FromSeconds(30), "the re-send to be handled");
            Assert.Equal(ModelUpdates.AlreadyApplied, daemon.Store!.UpdateLog()[1].Outcome);

            // Signed again: ECDSA draws a new signature, so other bytes for the same package; already applied too
            // (it was refused as made for the base it replaced).
            byte[] resigned = Signed(update);
            Assert.NotEqual(signed, resigned);
            await sub.PublishAsync("qana/fleet/updates", resigned);
            await TestEnv.WaitUntil(() => daemon.Store!.UpdateLog().Count == 3, TimeSpan.FromSeconds(30), "the re-signed package to be handled");
            var again = daemon.Store!.UpdateLog()[2];
            Assert.True(again.Outcome == ModelUpdates.AlreadyApplied, again.Reason);
            Assert.Contains("the same package signed again", again.Reason);
        }
        var all = sub.Results.Values.Select(q => q.First()).ToList();
        var first = all.Where(r => images.Take(4).Select(Sha).Contains(r.GetProperty("image_sha256").GetString())).ToList();
        var after = all.Except(first).ToList();
        Assert.All(first, r => Assert.Equal("1.0.0", r.GetProperty("model").GetProperty("version").GetString()));
        Assert.All(after, r => Assert.Equal("1.0.1", r.GetProperty("model").GetProperty("version").GetString()));
        AssertMadeBy(all, bySha, new Dictionary<string, ModelPackage> { ["1.0.0"] = Shipped, ["1.0.1"] = patched });
        Assert.True(File.Exists(Path.Combine(_root, "state", "models", Convert.ToHexStringLower(SHA256.HashData(signed)) + ".qana")));

        // A restart on the same state folder runs the applied update again.
        sub.Messages.Clear();
        await using (var again = Daemon("devup"))
        {
            await again.StartAsync();
            await TestEnv.WaitUntil(() => StatusVersion(sub, "devup") == "1.0.1", TimeSpan.FromSeconds(30), "the restarted daemon's status to name 1.0.1");
            string image = TestEnv.RealImages(1, skip: 610)[0];
            bySha[Sha(image)] = image;
            TestEnv.Drop(image, again.Inbox);
            await TestEnv.WaitUntil(() => sub.Results.Values.Any(q => q.First().GetProperty("image_sha256").GetString() == Sha(image)), TimeSpan.FromSeconds(60), "a result after the restart");
            JsonElement r = sub.Results.Values.Select(q => q.First()).Single(q => q.GetProperty("image_sha256").GetString() == Sha(image));
            AssertMadeBy([r], bySha, new Dictionary<string, ModelPackage> { ["1.0.1"] = patched });
            Assert.Empty(again.Log.At(Serilog.Events.LogEventLevel.Error));
        }
    }

    /// <summary>
    /// A learner key (one device's) signs readouts of the learned line only: a higher version, once applied, would make
    /// every vendor release a downgrade and lock the device out of them.
    /// </summary>
    [Fact]
    public void A_learner_signed_readout_off_the_learned_line_is_refused_and_one_on_it_applied()
    {
        using var learner = SigningKey.Generate(SignerRole.Learner);
        File.WriteAllText(Path.Combine(_trust, "learner.pub"), learner.PublicKey.ToText());
        var choice = new EngineChoice(false, "managed integer engine");
        using var active = new ActiveModel(ClassifierFactory.Create(Shipped, ShippedPath, choice), "test");
        var updates = new ModelUpdates(new ModelAtStart(active, AppliedUpdates.State.None, null), Path.Combine(_root, "state"),
            new DeviceTrust(_trust, null), choice, NullLogger<ModelUpdates>.Instance);
        byte[] High(string version) => PackageSigner.Sign(PackageWriter.ToBytes(Readout(Shipped, version)), learner);

        foreach (string version in (string[])["99.0.0", "1.0.1"])
        {
            byte[] bytes = High(version);
            var (outcome, reason) = updates.Handle(bytes, Convert.ToHexStringLower(SHA256.HashData(bytes)));
            Assert.Equal(ModelUpdates.Refused, outcome);
            Assert.Contains("learned line", reason, StringComparison.Ordinal);
        }
        byte[] learned = High(ModelUpdates.LearnedVersion(Shipped.Manifest.Version));
        Assert.Equal(ModelUpdates.Applied, updates.Handle(learned, Convert.ToHexStringLower(SHA256.HashData(learned))).Outcome);
        Assert.Equal("1.0.0.1", active.Provider.ModelVersion);
    }

    [Fact]
    public async Task Bad_updates_are_refused_with_their_reason_and_the_old_model_keeps_classifying()
    {
        byte[] badSignature = Signed(Readout(Shipped, "1.0.1"));
        badSignature[^10] ^= 0x40;   // inside r‖s: the checksum still holds, the signature does not
        var updates = new (string What, byte[] Bytes, string Reason)[]
        {
            ("golden mismatch", Signed(Readout(Shipped, "1.0.1", breakGolden: true)), "golden self-test failed"),
            ("another model", Signed(Readout(PackageReader.Load(TestModel.Path_), "0.0.1")), $"is for {TestModel.Id}"),
            ("downgrade", Signed(Readout(Shipped, "0.9.0")), "downgrade"),
            ("bad signature", badSignature, "bad signature"),
        };
        await using var sub = new ResultSubscriber(_broker.Port, "qana/devrf/#");
        await sub.ConnectAsync();
        await using var daemon = Daemon("devrf");
        await daemon.StartAsync();
        foreach (var u in updates) await sub.PublishAsync("qana/devrf/updates", u.Bytes);
        await TestEnv.WaitUntil(() => daemon.Store!.UpdateLog().Count == updates.Length, TimeSpan.FromSeconds(60), "every update to be handled");
        var log = daemon.Store!.UpdateLog();
        for (int i = 0; i < updates.Length; i++)
        {
            Assert.True(log[i].Outcome == ModelUpdates.Refused, $"{updates[i].What}: {log[i].Outcome} {log[i].Reason}");
            Assert.Contains(updates[i].Reason, log[i].Reason, StringComparison.Ordinal);
        }
        Assert.False(Directory.Exists(Path.Combine(daemon.StateDir, "models")) && Directory.GetFiles(Path.Combine(daemon.StateDir, "models")).Length > 0);

        string[] images = TestEnv.RealImages(3, skip: 620);
        foreach (string image in images) TestEnv.Drop(image, daemon.Inbox);
        await TestEnv.WaitUntil(() => sub.Results.Count >= 3, TimeSpan.FromSeconds(60), "results of the old model");
        AssertMadeBy(sub.Results.Values.Select(q => q.First()), images.ToDictionary(Sha), new Dictionary<string, ModelPackage> { ["1.0.0"] = Shipped });
        Assert.Equal("1.0.0", StatusVersion(sub, "devrf"));
    }

    // Captures keep landing while the update is swapped in: every image gets exactly one result, and each result is
    // what the model its version names makes of the image.
    [Fact]
    public async Task Swap_under_load_loses_nothing_and_every_result_names_the_model_that_made_it()
    {
        ModelPackage update = Readout(Shipped, "1.0.1");
        ModelPackage patched = ReadoutUpdates.Apply(Shipped, update);
        string[] images = TestEnv.RealImages(40, skip: 640);
        await using var sub = new ResultSubscriber(_broker.Port, "qana/devld/#");
        await sub.ConnectAsync();
        await using var daemon = Daemon("devld");
        await daemon.StartAsync();
        foreach (string image in images.Take(30)) TestEnv.Drop(image, daemon.Inbox);
        await TestEnv.WaitUntil(() => sub.Results.Count >= 3, TimeSpan.FromSeconds(120), "the first results");
        await sub.PublishAsync("qana/devld/updates", Signed(update));
        await TestEnv.WaitUntil(() => daemon.Store!.UpdateLog().Count == 1, TimeSpan.FromSeconds(120), "the update to be handled");
        Assert.Equal(ModelUpdates.Applied, daemon.Store!.UpdateLog()[0].Outcome);
        foreach (string image in images.Skip(30)) TestEnv.Drop(image, daemon.Inbox);
        await TestEnv.WaitUntil(() => sub.Results.Count >= images.Length, TimeSpan.FromSeconds(300), $"{images.Length} results",
            () => $"{sub.Results.Count} received");

        var results = sub.Results.Values.Select(q => q.First()).ToList();
        // Nothing lost, nothing classified twice (a second classification by the other model would be a second result id).
        Assert.Equal(images.Length, results.Count);
        Assert.Equal(images.Select(Sha).ToHashSet(), results.Select(r => r.GetProperty("image_sha256").GetString()!).ToHashSet());
        Assert.Equal(images.Length, daemon.Store.ResultCount());
        var late = images.Skip(30).Select(Sha).ToHashSet();
        Assert.All(results.Where(r => late.Contains(r.GetProperty("image_sha256").GetString()!)),
            r => Assert.Equal("1.0.1", r.GetProperty("model").GetProperty("version").GetString()));
        Assert.Contains(results, r => r.GetProperty("model").GetProperty("version").GetString() == "1.0.0");
        AssertMadeBy(results, images.ToDictionary(Sha), new Dictionary<string, ModelPackage> { ["1.0.0"] = Shipped, ["1.0.1"] = patched });
    }

    [Fact]
    public async Task A_damaged_applied_update_at_start_falls_back_to_the_configured_model_and_says_why()
    {
        byte[] signed = Signed(Readout(Shipped, "1.0.1"));
        string sha = Convert.ToHexStringLower(SHA256.HashData(signed));
        byte[] damaged = (byte[])signed.Clone();
        damaged[40] ^= 0x01;   // inside the JSON: the package checksum no longer holds
        new AppliedUpdates(Path.Combine(_root, "state", "models")).Commit(new AppliedUpdates.State(null, [sha]), sha, damaged);

        await using var sub = new ResultSubscriber(_broker.Port, "qana/devdm/#");
        await sub.ConnectAsync();
        await using var daemon = Daemon("devdm");
        await daemon.StartAsync();
        await TestEnv.WaitUntil(() => StatusVersion(sub, "devdm") != "", TimeSpan.FromSeconds(30), "the status");
        JsonElement status = LastStatus(sub, "devdm");
        Assert.Equal("1.0.0", status.GetProperty("model").GetProperty("version").GetString());
        string source = status.GetProperty("model_source").GetString()!;
        Assert.Contains("applied update not used", source, StringComparison.Ordinal);
        Assert.Contains("corrupt", source, StringComparison.Ordinal);
        Assert.Contains(daemon.Log.At(Serilog.Events.LogEventLevel.Error), line => line.Contains("applied update not used", StringComparison.Ordinal));

        string image = TestEnv.RealImages(1, skip: 690)[0];
        TestEnv.Drop(image, daemon.Inbox);
        await TestEnv.WaitUntil(() => sub.Results.Count >= 1, TimeSpan.FromSeconds(60), "a result of the configured model");
        AssertMadeBy(sub.Results.Values.Select(q => q.First()), new Dictionary<string, string> { [Sha(image)] = image },
            new Dictionary<string, ModelPackage> { ["1.0.0"] = Shipped });

        // The intact update, sent again, is applied on top of the configured model (the broken chain is replaced).
        await sub.PublishAsync("qana/devdm/updates", signed);
        await TestEnv.WaitUntil(() => daemon.Store!.UpdateLog().Count == 1, TimeSpan.FromSeconds(60), "the update to be handled");
        Assert.Equal(ModelUpdates.Applied, daemon.Store!.UpdateLog()[0].Outcome);
    }
}
