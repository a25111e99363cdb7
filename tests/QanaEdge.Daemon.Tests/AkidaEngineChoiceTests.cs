using System.Text.Json;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using QanaEdge.Daemon.Classification;
using QanaEdge.Daemon.Configuration;
using QanaEdge.Daemon.Tests.Infrastructure;
using QanaEdge.Daemon.Updates;
using QanaEdge.Imaging;
using QanaEdge.Model;
using QanaEdge.Model.Packaging;
using QanaEdge.TestSupport;
using Serilog;
using Serilog.Extensions.Logging;

namespace QanaEdge.Daemon.Tests;

/// <summary>
/// The engine chosen at start, with an emulated card: a /dev stand-in holding an akida0 node and the emulated AKD1000
/// library (tests/QanaEdge.AkidaEmulator) loaded through the daemon's real [LibraryImport] path.
/// </summary>
public sealed class AkidaEngineChoiceTests : IDisposable
{
    private readonly string _dev = TestEnv.TempDir("dev");
    private static readonly ModelPackage s_akd1000 = TestGraphs.Akd1000Shaped(seed: 3);

    public AkidaEngineChoiceTests()
    {
        File.WriteAllBytes(Path.Combine(_dev, "akida0"), []);
        Assert.True(File.Exists(TestData.AkidaEmulator), $"the Akida emulator was not built ({TestData.AkidaEmulator})");
    }

    public void Dispose()
    {
        try { Directory.Delete(_dev, recursive: true); } catch (IOException) { }
    }

    private EngineChoice Choose() => EngineSelector.Choose(EnginePreference.Auto, _dev, library: TestData.AkidaEmulator);

    [Fact]
    public void Akd1000Model_WithACard_RunsOnTheCard_WithTheManagedEnginesResults()
    {
        EngineChoice choice = Choose();
        Assert.True(choice.UseAkida, choice.Reason);
        Assert.Equal(Path.Combine(_dev, "akida0"), choice.Device);

        using IClassifierProvider provider = ClassifierFactory.Create(s_akd1000, "akd1000-shaped-3.qana", choice);
        Assert.Equal($"akida AKD1000 ({Path.Combine(_dev, "akida0")})", provider.EngineName);
        Assert.Contains("programmed on the card", provider.EngineReason, StringComparison.Ordinal);

        using IImageClassifier onCard = provider.CreateClassifier();
        using IImageClassifier onCard2 = provider.CreateClassifier();   // workers share the card
        using var managed = new LesionImageClassifier(s_akd1000, LesionClassifier.CreateEngine(s_akd1000));
        foreach (string image in TestEnv.RealImages(3, skip: 500))
        {
            byte[] bytes = File.ReadAllBytes(image);
            var m = managed.Classify(bytes);
            var a = onCard.Classify(bytes);
            Assert.Equal(m.Probabilities, a.Probabilities);
            Assert.Equal(m.Label, a.Label);
            Assert.Equal(m.Tiled, a.Tiled);
            Assert.Equal(a.Probabilities, onCard2.Classify(bytes).Probabilities);
        }
    }

    [Fact]
    public void Paper8Model_WithACard_RunsManaged_AndSaysWhy()
    {
        using IClassifierProvider provider = ClassifierFactory.Create(TestGraphs.QanaShaped(3), "qana-shaped-3.qana", Choose());
        Assert.StartsWith("managed IntegerEngine", provider.EngineName, StringComparison.Ordinal);
        Assert.Contains("model profile paper8 cannot run on AKD1000", provider.EngineReason, StringComparison.Ordinal);
        Assert.EndsWith(": managed integer engine", provider.EngineReason, StringComparison.Ordinal);
    }

    /// <summary>
    /// A package that loads but that the integer engine refuses to prepare (here an accumulator that could overflow
    /// int32): the managed engine cannot run it, which the factory says with <see cref="ModelUnavailableException"/>,
    /// the one failure the daemon's start turns into a line and exit code 1, and the one the start's fall-back from a
    /// failed card check catches. Before, the engine's InvalidGraphException went out as it was: qanad ended with an
    /// unhandled exception and its stack trace.
    /// </summary>
    [Fact]
    public void A_model_the_managed_engine_cannot_prepare_is_unavailable_not_an_unhandled_exception()
    {
        ModelPackage p = TestGraphs.QanaShaped(seed: 3);
        Model.Graph.Node conv = p.Graph.Nodes.First(n => n.Kind == Model.Graph.OpKind.Conv2D && n.Bias is { Length: > 0 });
        conv.Bias![0] = int.MaxValue;
        var e = Assert.Throws<ModelUnavailableException>(() =>
            ClassifierFactory.Create(p, "overflowing.qana", new EngineChoice(false, "managed engine requested by Qana:Engine=Managed")));
        Assert.Contains("cannot run on the managed engine", e.Message, StringComparison.Ordinal);
        Assert.Contains("could overflow int32", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ModelTheCardRefuses_RunsManaged_WithTheDevicesMessage()
    {
        // Labelled akd1000, but its graph is the paper8 one: the card's constraint check refuses it.
        ModelPackage p = TestGraphs.QanaShaped(3);
        ModelPackage mislabelled = TestGraphs.Wrap(p.Graph, "mislabelled", 64, 64, 3, p.Manifest.Calibration.Beta, QuantizationProfile.Akd1000);
        using IClassifierProvider provider = ClassifierFactory.Create(mislabelled, "mislabelled.qana", Choose());
        Assert.StartsWith("managed IntegerEngine", provider.EngineName, StringComparison.Ordinal);
        Assert.Contains("the card refused the model: program refused: ", provider.EngineReason, StringComparison.Ordinal);
        Assert.Contains("AKD1000 constraint violation", provider.EngineReason, StringComparison.Ordinal);
    }

    [Fact]
    public void NoCard_OrALibraryThatDoesNotLoad_RunsManaged_AndSaysWhy()
    {
        string empty = TestEnv.TempDir("nodev");
        EngineChoice none = EngineSelector.Choose(EnginePreference.Auto, empty, library: TestData.AkidaEmulator);
        Assert.False(none.UseAkida);
        Assert.Contains("no Akida device", none.Reason, StringComparison.Ordinal);

        EngineChoice noLibrary = EngineSelector.Choose(EnginePreference.Auto, _dev, library: Path.Combine(empty, "libqana_akida.so"));
        Assert.False(noLibrary.UseAkida);
        Assert.Contains("does not load", noLibrary.Reason, StringComparison.Ordinal);

        EngineChoice managed = EngineSelector.Choose(EnginePreference.Managed, _dev, library: TestData.AkidaEmulator);
        Assert.False(managed.UseAkida);
        Directory.Delete(empty);
    }

    [Fact]
    public async Task Daemon_WithACardAndAnAkd1000Model_ClassifiesOnTheCard_AndItsStatusSaysSo()
    {
        string root = TestEnv.TempDir("akida-e2e");
        string model = Path.Combine(root, "akd1000-shaped-3.qana");
        PackageWriter.Save(s_akd1000, model);
        using var broker = new MosquittoBroker();
        await using var sub = new ResultSubscriber(broker.Port, "qana/akida1/#");
        await sub.ConnectAsync();
        await using (var daemon = new DaemonRunner(root, broker.Port, "akida1", null,
            $"--Qana:Model={model}", $"--Qana:Akida:DevDir={_dev}", $"--Qana:Akida:Library={TestData.AkidaEmulator}"))
        {
            await daemon.StartAsync();
            string[] images = TestEnv.RealImages(3, skip: 600);
            foreach (string image in images) TestEnv.Drop(image, daemon.Inbox);
            await TestEnv.WaitUntil(() => sub.Results.Count >= 3, TimeSpan.FromSeconds(120), "3 results");
            JsonElement status = sub.Messages.Where(m => m.Topic == "qana/akida1/status").Select(m => JsonDocument.Parse(m.Payload).RootElement).Last();
            Assert.Equal("online", status.GetProperty("state").GetString());
            Assert.StartsWith("akida AKD1000", status.GetProperty("engine").GetString(), StringComparison.Ordinal);
            Assert.Contains("programmed on the card", status.GetProperty("engine_reason").GetString(), StringComparison.Ordinal);
            Assert.Equal("akd1000-shaped-3", sub.Results.Values.First().First().GetProperty("model").GetProperty("id").GetString());
        }

        // The stopped daemon closed the card (the emulated card, like the driver, has one owner at a time), so a daemon
        // started after it gets the card rather than "device busy" and a fall-back to the managed engine.
        int statusesBefore = sub.Messages.Count(m => m.Topic == "qana/akida1/status");
        await using (var again = new DaemonRunner(root, broker.Port, "akida1", null,
            $"--Qana:Model={model}", $"--Qana:Akida:DevDir={_dev}", $"--Qana:Akida:Library={TestData.AkidaEmulator}"))
        {
            await again.StartAsync();
            JsonElement Online() => sub.Messages.Where(m => m.Topic == "qana/akida1/status").Skip(statusesBefore)
                .Select(m => JsonDocument.Parse(m.Payload).RootElement).LastOrDefault(s => s.GetProperty("state").GetString() == "online");
            await TestEnv.WaitUntil(() => Online().ValueKind == JsonValueKind.Object, TimeSpan.FromSeconds(60), "the second daemon's status");
            Assert.StartsWith("akida AKD1000", Online().GetProperty("engine").GetString(), StringComparison.Ordinal);
        }
        try { Directory.Delete(root, recursive: true); } catch (IOException) { }
    }

    /// <summary>
    /// The card fails while the daemon classifies on it (the emulated card answers every enqueue with a device fault):
    /// the model moves to the managed engine, the images are classified there with the card's results, nothing is
    /// quarantined, and the status names the managed engine and the card's message. Before, every capture after the
    /// fault was quarantined as a classifier error.
    /// </summary>
    [Fact]
    public async Task A_card_that_fails_while_classifying_hands_its_model_to_the_managed_engine_and_loses_no_image()
    {
        string root = TestEnv.TempDir("akida-runtime-fault");
        string model = Path.Combine(root, "akd1000-shaped-3.qana");
        PackageWriter.Save(s_akd1000, model);
        string fault = Path.Combine(_dev, "akida0") + ".fault";
        using var broker = new MosquittoBroker();
        await using var sub = new ResultSubscriber(broker.Port, "qana/akida2/#");
        await sub.ConnectAsync();
        string[] images = TestEnv.RealImages(5, skip: 610);
        await using (var daemon = new DaemonRunner(root, broker.Port, "akida2", null,
            $"--Qana:Model={model}", $"--Qana:Akida:DevDir={_dev}", $"--Qana:Akida:Library={TestData.AkidaEmulator}", "--Qana:Workers=2"))
        {
            await daemon.StartAsync();
            TestEnv.Drop(images[0], daemon.Inbox);
            await TestEnv.WaitUntil(() => sub.Results.Count >= 1, TimeSpan.FromSeconds(60), "the result from the card");
            File.WriteAllText(fault, "");
            try
            {
                foreach (string image in images[1..]) TestEnv.Drop(image, daemon.Inbox);
                await TestEnv.WaitUntil(() => sub.Results.Count >= 5, TimeSpan.FromSeconds(60), "5 results");
            }
            finally { File.Delete(fault); }
            JsonElement Last() => sub.Messages.Where(m => m.Topic == "qana/akida2/status").Select(m => JsonDocument.Parse(m.Payload).RootElement).Last();
            await TestEnv.WaitUntil(() => Last().GetProperty("engine").GetString()!.StartsWith("managed", StringComparison.Ordinal),
                TimeSpan.FromSeconds(10), "a status naming the managed engine");
            Assert.Equal("online", Last().GetProperty("state").GetString());
            Assert.Contains("the Akida card failed (device fault: the card stopped answering)", Last().GetProperty("engine_reason").GetString(), StringComparison.Ordinal);
            Assert.False(Directory.Exists(daemon.QuarantineDir) && Directory.EnumerateFileSystemEntries(daemon.QuarantineDir).Any(),
                "nothing may be quarantined for the card's fault");
            sub.AssertOneResultIdPerImage(images);
        }

        // Each result is what the managed engine gives for that image, the card's logits being the managed engine's.
        using IClassifierProvider managed = ClassifierFactory.Create(s_akd1000, model, new EngineChoice(false, "reference"));
        using IImageClassifier reference = managed.CreateClassifier();
        foreach (string image in images)
        {
            byte[] bytes = File.ReadAllBytes(image);
            string sha = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(bytes));
            JsonElement result = sub.Results.Values.Select(q => q.First()).Single(r => r.GetProperty("image_sha256").GetString() == sha);
            Classification.Classification expected = reference.Classify(bytes);
            Assert.Equal(expected.Label, result.GetProperty("label").GetString());
            for (int k = 0; k < Classes.Count; k++)
                Assert.Equal(Math.Round(expected.Probabilities[k], 6), result.GetProperty("probabilities").GetProperty(Classes.Codes[k]).GetDouble());
        }
        try { Directory.Delete(root, recursive: true); } catch (IOException) { }
    }

    /// <summary>
    /// The card's return after a fault, with a model that carries no golden vectors (as one patched by a readout update):
    /// while the card still fails, its tries fail on vectors recorded for the check, each wait twice the one before, and
    /// the model stays on the managed engine; once the card answers again the model moves back (the status names the
    /// card), and a second fault moves it off again, which shows the card was running it, with a longer first wait than
    /// the first fault's (the card came back less than an hour before). No image is lost or quarantined.
    /// </summary>
    [Fact]
    public async Task A_card_that_answers_again_after_a_fault_gets_its_model_back_once_it_reproduces_the_golden_vectors()
    {
        string root = TestEnv.TempDir("akida-return");
        string model = Path.Combine(root, "akd1000-shaped-3.qana");
        PackageWriter.Save(s_akd1000, model);
        Assert.Empty(s_akd1000.Manifest.Golden);
        string fault = Path.Combine(_dev, "akida0") + ".fault";
        using var broker = new MosquittoBroker();
        await using var sub = new ResultSubscriber(broker.Port, "qana/akida3/#");
        await sub.ConnectAsync();
        string[] images = TestEnv.RealImages(4, skip: 630);
        await using var daemon = new DaemonRunner(root, broker.Port, "akida3", null,
            $"--Qana:Model={model}", $"--Qana:Akida:DevDir={_dev}", $"--Qana:Akida:Library={TestData.AkidaEmulator}", "--Qana:Akida:RetrySeconds=0.2");
        await daemon.StartAsync();
        JsonElement Last() => sub.Messages.Where(m => m.Topic == "qana/akida3/status").Select(m => JsonDocument.Parse(m.Payload).RootElement).Last();
        Task OnEngine(string prefix, string what) => TestEnv.WaitUntil(() => sub.Messages.Any(m => m.Topic == "qana/akida3/status")
            && Last().GetProperty("engine").GetString()!.StartsWith(prefix, StringComparison.Ordinal), TimeSpan.FromSeconds(30), what);
        await OnEngine("akida", "a status naming the card at start");

        File.WriteAllText(fault, "");
        TestEnv.Drop(images[0], daemon.Inbox);
        await TestEnv.WaitUntil(() => sub.Results.Count >= 1, TimeSpan.FromSeconds(60), "the first result");
        await OnEngine("managed", "a status naming the managed engine after the fault");
        // Tries at 0.2, 0.6, 1.4 s ... after the fault: at least two fail while the card still does.
        await TestEnv.WaitUntil(() => daemon.Log.At(Serilog.Events.LogEventLevel.Warning).Count(l => l.Contains("still not usable", StringComparison.Ordinal)) >= 2,
            TimeSpan.FromSeconds(30), "two failed tries");
        Assert.Contains(daemon.Log.At(Serilog.Events.LogEventLevel.Warning), l => l.Contains("golden self-test", StringComparison.Ordinal)
            || l.Contains("the card stopped answering", StringComparison.Ordinal));
        Assert.StartsWith("managed", Last().GetProperty("engine").GetString(), StringComparison.Ordinal);
        string[] warnings = [.. daemon.Log.At(Serilog.Events.LogEventLevel.Warning)];
        Assert.Contains(warnings, l => l.Contains("tried again in 0.2 s", StringComparison.Ordinal));
        Assert.Contains(warnings, l => l.Contains("next try in 0.4 s", StringComparison.Ordinal));
        Assert.Contains(warnings, l => l.Contains("next try in 0.8 s", StringComparison.Ordinal));

        File.Delete(fault);
        await OnEngine("akida", "a status naming the card again");
        // The swap that gives the model back publishes the status; the card's return is logged after it.
        await CardBackLogged(daemon);
        Assert.DoesNotContain("failed", Last().GetProperty("engine_reason").GetString(), StringComparison.Ordinal);
        Assert.Contains(daemon.Log.At(Serilog.Events.LogEventLevel.Warning), l => l.Contains("The Akida card is back", StringComparison.Ordinal));
        TestEnv.Drop(images[1], daemon.Inbox);
        await TestEnv.WaitUntil(() => sub.Results.Count >= 2, TimeSpan.FromSeconds(60), "a result from the card");
        Assert.StartsWith("akida", Last().GetProperty("engine").GetString(), StringComparison.Ordinal);

        File.WriteAllText(fault, "");
        try
        {
            foreach (string image in images[2..]) TestEnv.Drop(image, daemon.Inbox);
            await TestEnv.WaitUntil(() => sub.Results.Count >= 4, TimeSpan.FromSeconds(60), "4 results");
            await OnEngine("managed", "the managed engine after the second fault");
        }
        finally { File.Delete(fault); }
        double[] firstWaits = [.. daemon.Log.At(Serilog.Events.LogEventLevel.Warning)
            .Where(l => l.Contains("will be tried again in ", StringComparison.Ordinal))
            .Select(l => double.Parse(l.Split("tried again in ")[1].Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture))];
        Assert.Equal(2, firstWaits.Length);
        Assert.True(firstWaits[1] >= 4 * firstWaits[0], $"first waits {string.Join(", ", firstWaits)}: a card that failed again soon after coming back waits longer");
        Assert.False(Directory.Exists(daemon.QuarantineDir) && Directory.EnumerateFileSystemEntries(daemon.QuarantineDir).Any(),
            "nothing may be quarantined for the card's fault");
        sub.AssertOneResultIdPerImage(images);
        await daemon.StopAsync();
        try { Directory.Delete(root, recursive: true); } catch (IOException) { }
    }

    /// <summary>
    /// A card whose weight memory corrupts the program (the emulator's flip switch: one bit of a stored weight flipped
    /// as the card is programmed) programs without complaint and then computes other logits. At start the card must
    /// reproduce the check vectors before the model runs on it: it does not, so the daemon starts on the managed engine,
    /// the status's engine_reason and the log name the mismatch, and a real image is classified as the managed engine
    /// classifies it. The card is tried again at the growing waits, and once the switch is gone (the card computes the
    /// model again) the model moves back onto it and classifies there. Before, the start programmed the card without
    /// running any input on it, and every image was classified by the corrupted program.
    /// </summary>
    [Fact]
    public async Task A_card_that_computes_wrong_logits_at_start_is_not_used_until_it_reproduces_the_check_vectors()
    {
        string root = TestEnv.TempDir("akida-start-flip");
        string model = Path.Combine(root, "akd1000-shaped-3.qana");
        PackageWriter.Save(s_akd1000, model);
        string flip = Path.Combine(_dev, "akida0") + ".flip";
        string[] images = TestEnv.RealImages(2, skip: 650);
        using IClassifierProvider managed = ClassifierFactory.Create(s_akd1000, model, new EngineChoice(false, "reference"));
        using IImageClassifier reference = managed.CreateClassifier();
        using var broker = new MosquittoBroker();
        await using var sub = new ResultSubscriber(broker.Port, "qana/akida7/#");
        await sub.ConnectAsync();
        File.WriteAllText(flip, "");
        await using var daemon = new DaemonRunner(root, broker.Port, "akida7", null,
            $"--Qana:Model={model}", $"--Qana:Akida:DevDir={_dev}", $"--Qana:Akida:Library={TestData.AkidaEmulator}", "--Qana:Akida:RetrySeconds=0.2");
        try
        {
            await daemon.StartAsync();
            await TestEnv.WaitUntil(() => sub.Messages.Any(m => m.Topic == "qana/akida7/status"), TimeSpan.FromSeconds(30), "the status at start");
            JsonElement status = Last();
            Assert.Equal("online", status.GetProperty("state").GetString());
            Assert.StartsWith("managed IntegerEngine", status.GetProperty("engine").GetString(), StringComparison.Ordinal);
            string reason = status.GetProperty("engine_reason").GetString()!;
            Assert.Contains("the Akida card failed (", reason, StringComparison.Ordinal);
            Assert.Contains("golden self-test failed", reason, StringComparison.Ordinal);
            Assert.Contains(daemon.Log.At(Serilog.Events.LogEventLevel.Error), e => e.Contains("did not pass its check at start", StringComparison.Ordinal)
                && e.Contains("golden self-test failed", StringComparison.Ordinal));

            TestEnv.Drop(images[0], daemon.Inbox);
            await TestEnv.WaitUntil(() => sub.Results.Count >= 1, TimeSpan.FromSeconds(60), "the result from the managed engine");
            AssertManagedResult(images[0]);
            // The card is tried again, and fails the check while its memory still corrupts the program.
            await TestEnv.WaitUntil(() => daemon.Log.At(Serilog.Events.LogEventLevel.Warning).Count(l => l.Contains("still not usable", StringComparison.Ordinal)
                && l.Contains("golden self-test failed", StringComparison.Ordinal)) >= 1, TimeSpan.FromSeconds(30), "a failed try");
            Assert.StartsWith("managed", Last().GetProperty("engine").GetString(), StringComparison.Ordinal);
        }
        finally { File.Delete(flip); }

        await TestEnv.WaitUntil(() => Last().GetProperty("engine").GetString()!.StartsWith("akida AKD1000", StringComparison.Ordinal),
            TimeSpan.FromSeconds(30), "a status naming the card once it computes the model");
        // The swap that gives the model back publishes the status; the card's return is logged after it.
        await CardBackLogged(daemon);
        Assert.DoesNotContain("failed", Last().GetProperty("engine_reason").GetString(), StringComparison.Ordinal);
        Assert.DoesNotContain("failed", Last().GetProperty("model_source").GetString(), StringComparison.Ordinal);
        Assert.Contains(daemon.Log.At(Serilog.Events.LogEventLevel.Warning), l => l.Contains("The Akida card is back", StringComparison.Ordinal));
        TestEnv.Drop(images[1], daemon.Inbox);
        await TestEnv.WaitUntil(() => sub.Results.Count >= 2, TimeSpan.FromSeconds(60), "the result from the card");
        AssertManagedResult(images[1]);
        Assert.StartsWith("akida AKD1000", Last().GetProperty("engine").GetString(), StringComparison.Ordinal);
        sub.AssertOneResultIdPerImage(images);
        await daemon.StopAsync();
        try { Directory.Delete(root, recursive: true); } catch (IOException) { }

        JsonElement Last() => sub.Messages.Where(m => m.Topic == "qana/akida7/status").Select(m => JsonDocument.Parse(m.Payload).RootElement).Last();

        // The result stored and published for the image is what the managed engine gives for it.
        void AssertManagedResult(string image)
        {
            byte[] bytes = File.ReadAllBytes(image);
            string sha = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(bytes));
            JsonElement result = sub.Results.Values.Select(q => q.First()).Single(r => r.GetProperty("image_sha256").GetString() == sha);
            Classification.Classification expected = reference.Classify(bytes);
            Assert.Equal(expected.Label, result.GetProperty("label").GetString());
            for (int k = 0; k < Classes.Count; k++)
                Assert.Equal(Math.Round(expected.Probabilities[k], 6), result.GetProperty("probabilities").GetProperty(Classes.Codes[k]).GetDouble());
        }
    }

    /// <summary>
    /// An applied update and a card that does not reproduce its check vectors at start: the update runs on the managed
    /// engine (its version in the status and in the results), and once the card computes again the same update goes
    /// onto it. Before, the start dropped the update and the configured model classified until the next restart.
    /// </summary>
    [Fact]
    public async Task An_applied_update_whose_check_fails_on_the_card_at_start_runs_managed_and_goes_onto_the_card_once_it_computes()
    {
        var (root, model, trust, state, signed, sha, _, _) = UpdateOnDisk("akida-start-update");
        new AppliedUpdates(ModelUpdates.ModelsDir(state)).Commit(new AppliedUpdates.State(sha, []), sha, signed);
        string updated = s_akd1000.Manifest.Version + ".9";
        string flip = Path.Combine(_dev, "akida0") + ".flip";
        string[] images = TestEnv.RealImages(2, skip: 655);
        using var broker = new MosquittoBroker();
        await using var sub = new ResultSubscriber(broker.Port, "qana/akida8/#");
        await sub.ConnectAsync();
        File.WriteAllText(flip, "");
        await using var daemon = new DaemonRunner(root, broker.Port, "akida8", null, $"--Qana:Model={model}", $"--Qana:TrustDir={trust}",
            $"--Qana:Akida:DevDir={_dev}", $"--Qana:Akida:Library={TestData.AkidaEmulator}", "--Qana:Akida:RetrySeconds=0.2");
        try
        {
            await daemon.StartAsync();
            await TestEnv.WaitUntil(() => sub.Messages.Any(m => m.Topic == "qana/akida8/status"), TimeSpan.FromSeconds(30), "the status at start");
            JsonElement status = Last();
            Assert.Equal(updated, status.GetProperty("model").GetProperty("version").GetString());
            Assert.StartsWith("managed IntegerEngine", status.GetProperty("engine").GetString(), StringComparison.Ordinal);
            Assert.Contains("golden self-test failed", status.GetProperty("engine_reason").GetString(), StringComparison.Ordinal);
            Assert.StartsWith("applied update: ", status.GetProperty("model_source").GetString(), StringComparison.Ordinal);
            Assert.DoesNotContain(daemon.Log.Events, e => e.Message.Contains("applied update not used", StringComparison.Ordinal));

            TestEnv.Drop(images[0], daemon.Inbox);
            await TestEnv.WaitUntil(() => sub.Results.Count >= 1, TimeSpan.FromSeconds(60), "the result from the managed engine");
        }
        finally { File.Delete(flip); }

        await TestEnv.WaitUntil(() => Last().GetProperty("engine").GetString()!.StartsWith("akida AKD1000", StringComparison.Ordinal),
            TimeSpan.FromSeconds(30), "a status naming the card once it computes the updated model");
        Assert.Equal(updated, Last().GetProperty("model").GetProperty("version").GetString());
        await CardBackLogged(daemon);
        TestEnv.Drop(images[1], daemon.Inbox);
        await TestEnv.WaitUntil(() => sub.Results.Count >= 2, TimeSpan.FromSeconds(60), "the result from the card");
        Assert.All(sub.Results.Values, q => Assert.Equal(updated, q.First().GetProperty("model").GetProperty("version").GetString()));
        sub.AssertOneResultIdPerImage(images);
        await daemon.StopAsync();
        try { Directory.Delete(root, recursive: true); } catch (IOException) { }

        JsonElement Last() => sub.Messages.Where(m => m.Topic == "qana/akida8/status").Select(m => JsonDocument.Parse(m.Payload).RootElement).Last();
    }

    /// <summary>
    /// At start, a card that refuses the model's program itself keeps the behaviour of before the check: the model runs
    /// on the managed engine with the card's refusal as the reason, and it is no card fault, so nothing tries the card
    /// again; a card whose memory corrupts the program is one (the start names the mismatch), and a sound card takes it.
    /// </summary>
    [Fact]
    public void At_start_a_refusal_is_not_a_card_fault_but_a_card_that_does_not_reproduce_the_vectors_is()
    {
        EngineChoice choice = Choose();
        string node = Path.Combine(_dev, "akida0");
        File.WriteAllText(node + ".refuse", "program refused: 1 AKD1000 constraint violation(s): emulated");
        try
        {
            using IClassifierProvider refused = ClassifierFactory.CreateAtStart(s_akd1000, "akd1000-shaped-3.qana", choice, out string? fault);
            Assert.Null(fault);
            Assert.StartsWith("managed IntegerEngine", refused.EngineName, StringComparison.Ordinal);
            Assert.Equal($"{choice.Reason}, but the card refused the model: program refused: 1 AKD1000 constraint violation(s): emulated: managed integer engine",
                refused.EngineReason);
        }
        finally { File.Delete(node + ".refuse"); }

        File.WriteAllText(node + ".flip", "");
        try
        {
            using IClassifierProvider flipped = ClassifierFactory.CreateAtStart(s_akd1000, "akd1000-shaped-3.qana", choice, out string? fault);
            Assert.NotNull(fault);
            Assert.Contains("golden self-test failed", fault, StringComparison.Ordinal);
            Assert.False(flipped.HoldsDevice);
            Assert.Equal(ClassifierFactory.AfterCardFault(choice, fault).Reason, flipped.EngineReason);
        }
        finally { File.Delete(node + ".flip"); }

        using IClassifierProvider sound = ClassifierFactory.CreateAtStart(s_akd1000, "akd1000-shaped-3.qana", choice, out string? none);
        Assert.Null(none);
        Assert.True(sound.HoldsDevice, sound.EngineReason);
        Assert.Contains("programmed on the card", sound.EngineReason, StringComparison.Ordinal);
    }

    /// <summary>
    /// The daemon stops while a try to give the model back to the card is programming it (the emulated card holds the
    /// program while NODE.hold exists): the stop waits for the try instead of releasing the model and closing the
    /// card under it, ends once the try does, and leaves the card closed (it opens again afterwards: the emulated
    /// card, like the driver, has one owner at a time).
    /// </summary>
    [Fact]
    public async Task A_stop_during_a_try_to_give_the_model_back_to_the_card_waits_for_the_try_and_closes_the_card()
    {
        string root = TestEnv.TempDir("akida-stop-try");
        string model = Path.Combine(root, "akd1000-shaped-3.qana");
        PackageWriter.Save(s_akd1000, model);
        string node = Path.Combine(_dev, "akida0");
        string fault = node + ".fault", hold = node + ".hold", held = node + ".held";
        using var broker = new MosquittoBroker();
        await using var sub = new ResultSubscriber(broker.Port, "qana/akida5/#");
        await sub.ConnectAsync();
        await using var daemon = new DaemonRunner(root, broker.Port, "akida5", null,
            $"--Qana:Model={model}", $"--Qana:Akida:DevDir={_dev}", $"--Qana:Akida:Library={TestData.AkidaEmulator}", "--Qana:Akida:RetrySeconds=0.2");
        await daemon.StartAsync();
        await TestEnv.WaitUntil(() => sub.Messages.Any(m => m.Topic == "qana/akida5/status"
            && JsonDocument.Parse(m.Payload).RootElement.GetProperty("engine").GetString()!.StartsWith("akida", StringComparison.Ordinal)),
            TimeSpan.FromSeconds(30), "a status naming the card");

        Task stopped;
        File.WriteAllText(hold, "");
        try
        {
            File.WriteAllText(fault, "");
            TestEnv.Drop(TestEnv.RealImages(1, skip: 640)[0], daemon.Inbox);
            await TestEnv.WaitUntil(() => File.Exists(held), TimeSpan.FromSeconds(60), "a try programming the card");
            await TestEnv.WaitUntil(() => sub.Results.Count >= 1, TimeSpan.FromSeconds(60), "the image's result from the managed engine");
            File.Delete(fault);   // the try, once let go, reproduces the vectors and puts the model back on the card
            stopped = daemon.StopAsync();
            await Task.WhenAny(stopped, Task.Delay(TimeSpan.FromSeconds(3)));
            Assert.False(stopped.IsCompleted, "the stop must wait for the try programming the card");
        }
        finally
        {
            File.Delete(hold);
            File.Delete(fault);
        }
        await stopped.WaitAsync(TimeSpan.FromSeconds(60));
        File.Delete(held);
        Assert.Single(sub.Results);
        // Nothing holds the card any more: neither the try's program nor the model it may have put back.
        using (QanaEdge.Akida.AkidaDevice again = QanaEdge.Akida.AkidaDevice.Open(node)) { }
        try { Directory.Delete(root, recursive: true); } catch (IOException) { }
    }

    /// <summary>Waits for the log line of the card's return, which <see cref="CardFailover"/> writes after the swap that publishes the status.</summary>
    private static Task CardBackLogged(DaemonRunner daemon) =>
        TestEnv.WaitUntil(() => daemon.Log.At(Serilog.Events.LogEventLevel.Warning).Any(l => l.Contains("The Akida card is back", StringComparison.Ordinal)),
            TimeSpan.FromSeconds(30), "the card's return in the log");

    /// <summary><paramref name="model"/> as <paramref name="version"/> (of another profile when given), with two golden vectors recorded on the managed engine.</summary>
    private static ModelPackage WithGoldenVectors(ModelPackage model, string version, QuantizationProfile? profile = null)
    {
        ModelManifest m = model.Manifest;
        ModelManifest Manifest(GoldenVector[] golden) => new() { ModelId = m.ModelId, Version = version, Classes = m.Classes, Input = m.Input,
            Profile = profile ?? m.Profile, Calibration = m.Calibration, Layers = m.Layers, Golden = golden };
        var bare = new ModelPackage { Graph = model.Graph, Manifest = Manifest([]) };
        return new ModelPackage { Graph = model.Graph,
            Manifest = Manifest(QanaEdge.Runtime.GoldenVectors.Record(bare, Enumerable.Range(1, 2).Select(seed => TestGraphs.RandomInput(bare, seed)))) };
    }

    /// <summary>
    /// A readout update whose weights (all 100) the managed engine runs but the AKD1000 cannot hold (4-bit weights):
    /// its golden vectors are recorded on its own graph, so it passes every check short of programming the card.
    /// </summary>
    private static ModelPackage OutOfRangeReadout(ModelPackage model, string version)
    {
        Model.Graph.Node head = ReadoutUpdates.Head(model);
        var weights = Enumerable.Repeat((sbyte)100, head.Weights!.Length).ToArray();
        return ModelUpdateTests.WithGolden(model, version, weights, (double[])head.WeightScales!.Clone(), (int[])head.Bias!.Clone());
    }

    /// <summary>
    /// A signed readout update while the model runs on the card: the card is reprogrammed between images and goes on
    /// classifying (no fall-back to the managed engine), results after the swap are the patched model's bit for bit,
    /// an update whose golden vectors fail is refused before the card is touched, and one the card refuses to hold is
    /// refused with the old model programmed back.
    /// </summary>
    [Fact]
    public async Task Daemon_OnTheCard_AppliesAReadoutUpdate_ByReprogrammingIt_AndRefusesBadOnesKeepingTheCardsModel()
    {
        string root = TestEnv.TempDir("akida-swap");
        string model = Path.Combine(root, "akd1000-shaped-3.qana"), trust = Path.Combine(root, "trust");
        PackageWriter.Save(s_akd1000, model);
        Directory.CreateDirectory(trust);
        using var vendor = SigningKey.Generate(SignerRole.Vendor);
        File.WriteAllText(Path.Combine(trust, "vendor.pub"), vendor.PublicKey.ToText());
        ModelPackage update = ModelUpdateTests.Readout(s_akd1000, s_akd1000.Manifest.Version + ".1");
        ModelPackage broken = ModelUpdateTests.Readout(s_akd1000, s_akd1000.Manifest.Version + ".2", breakGolden: true);
        ModelPackage offCard = OutOfRangeReadout(s_akd1000, s_akd1000.Manifest.Version + ".3");
        ModelPackage patched = ReadoutUpdates.Apply(s_akd1000, update);
        string[] images = TestEnv.RealImages(6, skip: 620);

        using var broker = new MosquittoBroker();
        await using var sub = new ResultSubscriber(broker.Port, "qana/akida2/#");
        await sub.ConnectAsync();
        await using (var daemon = new DaemonRunner(root, broker.Port, "akida2", null,
            $"--Qana:Model={model}", $"--Qana:TrustDir={trust}", $"--Qana:Akida:DevDir={_dev}", $"--Qana:Akida:Library={TestData.AkidaEmulator}"))
        {
            await daemon.StartAsync();
            foreach (string image in images.Take(3)) TestEnv.Drop(image, daemon.Inbox);
            await TestEnv.WaitUntil(() => sub.Results.Count >= 3, TimeSpan.FromSeconds(120), "3 results before the update");

            await sub.PublishAsync("qana/akida2/updates", PackageSigner.Sign(PackageWriter.ToBytes(broken), vendor));
            await sub.PublishAsync("qana/akida2/updates", PackageSigner.Sign(PackageWriter.ToBytes(offCard), vendor));
            await sub.PublishAsync("qana/akida2/updates", PackageSigner.Sign(PackageWriter.ToBytes(update), vendor));
            await TestEnv.WaitUntil(() => daemon.Store!.UpdateLog().Count == 3, TimeSpan.FromSeconds(60), "the three updates to be handled");
            var log = daemon.Store!.UpdateLog();
            Assert.True(log[0].Outcome == ModelUpdates.Refused && log[0].Reason.Contains("golden self-test failed", StringComparison.Ordinal), log[0].Reason);
            // Valid for the managed engine, refused by the card: refused, and the card is programmed with the old model again.
            Assert.True(log[1].Outcome == ModelUpdates.Refused && log[1].Reason.Contains("cannot run on the card", StringComparison.Ordinal), log[1].Reason);
            Assert.Contains(daemon.Log.At(Serilog.Events.LogEventLevel.Error), e => e.Contains("programming", StringComparison.Ordinal) && e.Contains("back", StringComparison.Ordinal));
            Assert.True(log[2].Outcome == ModelUpdates.Applied, log[2].Reason);
            Assert.StartsWith("akida AKD1000", log[2].Reason[(log[2].Reason.IndexOf(" on ", StringComparison.Ordinal) + 4)..], StringComparison.Ordinal);

            foreach (string image in images.Skip(3)) TestEnv.Drop(image, daemon.Inbox);
            await TestEnv.WaitUntil(() => sub.Results.Count >= images.Length, TimeSpan.FromSeconds(120), "results after the update");
            JsonElement status = sub.Messages.Where(m => m.Topic == "qana/akida2/status").Select(m => JsonDocument.Parse(m.Payload).RootElement)
                .Last(s => s.GetProperty("state").GetString() == "online");
            Assert.StartsWith("akida AKD1000", status.GetProperty("engine").GetString(), StringComparison.Ordinal);
            Assert.Equal(update.Manifest.Version, status.GetProperty("model").GetProperty("version").GetString());
        }

        // Each result is what the managed engine gives for the model its version names.
        var models = new Dictionary<string, ModelPackage> { [s_akd1000.Manifest.Version] = s_akd1000, [update.Manifest.Version] = patched };
        var bySha = images.ToDictionary(f => Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(f))));
        var results = sub.Results.Values.Select(q => q.First()).ToList();
        Assert.Equal(3, results.Count(r => r.GetProperty("model").GetProperty("version").GetString() == update.Manifest.Version));
        foreach (JsonElement r in results)
        {
            ModelPackage made = models[r.GetProperty("model").GetProperty("version").GetString()!];
            using var managed = new LesionImageClassifier(made, LesionClassifier.CreateEngine(made));
            var direct = managed.Classify(File.ReadAllBytes(bySha[r.GetProperty("image_sha256").GetString()!]));
            Assert.Equal(direct.Label, r.GetProperty("label").GetString());
        }
        try { Directory.Delete(root, recursive: true); } catch (IOException) { }
    }

    /// <summary>
    /// A card that faults while a new model's golden vectors run on it: the update is refused, the old model is on the
    /// card again and classifies once the card is back. At start, an applied update whose self-test faults on the card
    /// runs on the managed engine, out of use after a fault, so that the card is tried again. Before, the fault
    /// escaped: the disposed old model stayed in place (every capture quarantined), and a start with an applied update
    /// failed; then, for a while, that start dropped the applied update and ran the configured model for the whole run.
    /// </summary>
    [Fact]
    public void A_card_fault_during_an_update_or_at_start_leaves_a_working_model()
    {
        var (root, model, trust, state, signed, sha, _, _) = UpdateOnDisk("akida-fault");
        string fault = Path.Combine(_dev, "akida0") + ".fault";
        byte[] image = File.ReadAllBytes(TestEnv.RealImages(1, skip: 625)[0]);
        EngineChoice choice = Choose();
        Assert.True(choice.UseAkida, choice.Reason);

        var active = new ActiveModel(ClassifierFactory.Create(s_akd1000, model, choice), "test");
        var updates = new ModelUpdates(new ModelAtStart(active, AppliedUpdates.State.None, null), state, new DeviceTrust(trust, null), choice,
            NullLogger<ModelUpdates>.Instance);
        File.WriteAllText(fault, "");
        var (outcome, reason) = updates.Handle(signed, sha);
        File.Delete(fault);

        Assert.Equal(ModelUpdates.Refused, outcome);
        Assert.Contains("the card stopped answering", reason);
        Assert.Equal(s_akd1000.Manifest.Version, active.Provider.ModelVersion);
        // The card still faults while the old model is programmed back, so it fails that model's golden vectors too,
        // and the old model runs on the managed engine rather than on a card that cannot compute.
        Assert.StartsWith("managed IntegerEngine", active.Provider.EngineName, StringComparison.Ordinal);
        Assert.Contains("the Akida card failed", active.Provider.EngineReason);
        using (IImageClassifier classifier = active.CreateClassifier(out _))
            Assert.Contains(classifier.Classify(image).Label, QanaEdge.Model.Classes.Codes);
        active.Dispose();

        // The same update applied earlier (stored as applied), and the card faulting at the next start.
        new AppliedUpdates(ModelUpdates.ModelsDir(state)).Commit(new AppliedUpdates.State(sha, []), sha, signed);
        var options = new QanaOptions { Inbox = Path.Combine(root, "inbox"), StateDir = state, Model = model, TrustDir = trust };
        File.WriteAllText(fault, "");
        ModelAtStart start = ModelUpdates.Start(options, new DeviceTrust(trust, null), choice);
        File.Delete(fault);
        using (start.Active)
        {
            Assert.Null(start.Problem);
            Assert.Equal(s_akd1000.Manifest.Version + ".9", start.Active.Provider.ModelVersion);
            Assert.StartsWith("managed IntegerEngine", start.Active.Provider.EngineName, StringComparison.Ordinal);
            Assert.Contains("the card stopped answering", start.Active.CardFault);
            Assert.Contains("the Akida card failed", start.Active.Provider.EngineReason);
            Assert.StartsWith("applied update: ", start.Active.Source, StringComparison.Ordinal);
            using IImageClassifier classifier = start.Active.CreateClassifier(out _);
            Assert.Contains(classifier.Classify(image).Label, QanaEdge.Model.Classes.Codes);
        }
        try { Directory.Delete(root, recursive: true); } catch (IOException) { }
    }

    /// <summary>
    /// A readout update while the model runs on the card: the patched model carries no golden vectors of its own (the
    /// model's belong to the old head), so the card must reproduce vectors recorded from seeded inputs before the update
    /// is in effect. A card that programs but does not compute (the emulator's fault switch) fails them and the update
    /// is refused; once the card answers again, the same update is applied on it. Before, the check on the card ran no
    /// vector at all, and the update was applied onto a card that could not classify.
    /// </summary>
    [Fact]
    public void A_readout_update_on_the_card_is_applied_only_once_the_card_computes_the_patched_model()
    {
        string root = TestEnv.TempDir("akida-readout-check");
        string model = Path.Combine(root, "akd1000-shaped-3.qana"), trust = Path.Combine(root, "trust"), state = Path.Combine(root, "state");
        PackageWriter.Save(s_akd1000, model);
        Directory.CreateDirectory(trust);
        using var vendor = SigningKey.Generate(SignerRole.Vendor);
        File.WriteAllText(Path.Combine(trust, "vendor.pub"), vendor.PublicKey.ToText());
        ModelPackage update = ModelUpdateTests.Readout(s_akd1000, s_akd1000.Manifest.Version + ".1");
        Assert.Empty(ReadoutUpdates.Apply(s_akd1000, update).Manifest.Golden);
        byte[] signed = PackageSigner.Sign(PackageWriter.ToBytes(update), vendor);
        string sha = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(signed));
        string fault = Path.Combine(_dev, "akida0") + ".fault";
        EngineChoice choice = Choose();
        Assert.True(choice.UseAkida, choice.Reason);
        using var active = new ActiveModel(ClassifierFactory.Create(s_akd1000, model, choice), "test");
        var updates = new ModelUpdates(new ModelAtStart(active, AppliedUpdates.State.None, null), state, new DeviceTrust(trust, null), choice,
            NullLogger<ModelUpdates>.Instance);

        File.WriteAllText(fault, "");
        var (outcome, reason) = updates.Handle(signed, sha);
        File.Delete(fault);
        Assert.True(outcome == ModelUpdates.Refused, reason);
        Assert.Contains("the card stopped answering", reason, StringComparison.Ordinal);
        Assert.Equal(s_akd1000.Manifest.Version, active.Provider.ModelVersion);

        (outcome, reason) = updates.Handle(signed, sha);
        Assert.True(outcome == ModelUpdates.Applied, reason);
        Assert.Equal(update.Manifest.Version, active.Provider.ModelVersion);
        Assert.True(active.Provider.HoldsDevice, active.Provider.EngineReason);
        try { Directory.Delete(root, recursive: true); } catch (IOException) { }
    }

    /// <summary>
    /// The card drops off the bus (its device node goes) while an update is being programmed: the update is refused,
    /// the card will not take the old model back either, so the old model runs on the managed engine, out of use
    /// after a fault; the card is then tried again on CardFailover's schedule, and once its node is back the old model
    /// returns to it after reproducing its golden vectors. Before, no try was scheduled: the model stayed on the
    /// managed engine until the next update or a restart.
    /// </summary>
    [Fact]
    public async Task A_card_that_fails_an_update_and_will_not_take_the_old_model_back_is_tried_again_and_gets_it_back()
    {
        var (root, model, trust, state, signed, sha, _, _) = UpdateOnDisk("akida-gone");
        string node = Path.Combine(_dev, "akida0");
        byte[] image = File.ReadAllBytes(TestEnv.RealImages(1, skip: 627)[0]);
        EngineChoice choice = Choose();
        Assert.True(choice.UseAkida, choice.Reason);
        using var stop = new CancellationTokenSource();
        using var active = new ActiveModel(ClassifierFactory.Create(s_akd1000, model, choice), "test");
        var failover = new CardFailover(active, choice, TimeSpan.FromMilliseconds(100), NullLogger.Instance, stop.Token);
        var updates = new ModelUpdates(new ModelAtStart(active, AppliedUpdates.State.None, null), state, new DeviceTrust(trust, null), choice,
            NullLogger<ModelUpdates>.Instance, failover);
        Assert.True(active.Provider.HoldsDevice);

        File.Delete(node);
        try
        {
            var (outcome, reason) = updates.Handle(signed, sha);
            Assert.True(outcome == ModelUpdates.Refused, reason);
            Assert.Contains("no such device", reason, StringComparison.Ordinal);
            Assert.Equal(s_akd1000.Manifest.Version, active.Provider.ModelVersion);
            Assert.False(active.Provider.HoldsDevice);
            Assert.NotNull(active.CardFault);
            Assert.Contains("the Akida card failed (", active.Provider.EngineReason, StringComparison.Ordinal);
            Assert.Contains("the Akida card failed (", active.Source, StringComparison.Ordinal);
            using (IImageClassifier classifier = active.CreateClassifier(out _))
                Assert.Contains(classifier.Classify(image).Label, QanaEdge.Model.Classes.Codes);
            // Tries at 0.1, 0.3, 0.7 s ... fail while the node is gone.
            await Task.Delay(400);
            Assert.False(active.Provider.HoldsDevice);
        }
        finally { File.WriteAllBytes(node, []); }

        await TestEnv.WaitUntil(() => active.Provider.HoldsDevice, TimeSpan.FromSeconds(30), "the old model back on the card");
        Assert.Equal(s_akd1000.Manifest.Version, active.Provider.ModelVersion);
        Assert.StartsWith("akida AKD1000", active.Provider.EngineName, StringComparison.Ordinal);
        Assert.Null(active.CardFault);
        Assert.Equal("test", active.Source);
        using (IImageClassifier classifier = active.CreateClassifier(out _))
            Assert.Contains(classifier.Classify(image).Label, QanaEdge.Model.Classes.Codes);
        stop.Cancel();
        await failover.StopAsync();
        try { Directory.Delete(root, recursive: true); } catch (IOException) { }
    }

    /// <summary>
    /// An update that arrives while the model is off a failed card is applied on the managed engine, and the card's
    /// return takes the updated model. Before, the update was built for the card, ran its golden vectors there and was
    /// refused with the card's fault.
    /// </summary>
    [Fact]
    public async Task An_update_while_the_card_is_out_of_use_runs_on_the_managed_engine_and_the_cards_return_takes_it()
    {
        var (root, model, trust, state, signed, sha, paper8, paper8Sha) = UpdateOnDisk("akida-fault-update");
        string fault = Path.Combine(_dev, "akida0") + ".fault";
        byte[] image = File.ReadAllBytes(TestEnv.RealImages(1, skip: 626)[0]);
        EngineChoice choice = Choose();
        using var stop = new CancellationTokenSource();
        using var active = new ActiveModel(ClassifierFactory.Create(s_akd1000, model, choice), "test");
        var updates = new ModelUpdates(new ModelAtStart(active, AppliedUpdates.State.None, null), state, new DeviceTrust(trust, null), choice,
            NullLogger<ModelUpdates>.Instance);
        var failover = new CardFailover(active, choice, TimeSpan.FromMilliseconds(100), NullLogger.Instance, stop.Token);

        File.WriteAllText(fault, "");
        try
        {
            // What a worker does when the card fails under it.
            using (IImageClassifier onCard = active.CreateClassifier(out int generation))
                failover.Leave(generation, Assert.Throws<QanaEdge.Akida.AkidaException>(() => onCard.Classify(image)));
            Assert.False(active.Provider.HoldsDevice);

            // A model the card could not hold is refused as it would be on the card: the card is still the engine.
            var (refused, why) = updates.Handle(paper8, paper8Sha);
            Assert.True(refused == ModelUpdates.Refused, why);
            Assert.Contains("akd1000 profile", why, StringComparison.Ordinal);

            var (outcome, reason) = updates.Handle(signed, sha);
            Assert.True(outcome == ModelUpdates.Applied, reason);
            Assert.Equal(s_akd1000.Manifest.Version + ".9", active.Provider.ModelVersion);
            Assert.StartsWith("managed", active.Provider.EngineName, StringComparison.Ordinal);
            Assert.Contains("the Akida card failed (device fault: the card stopped answering)", active.Provider.EngineReason, StringComparison.Ordinal);
        }
        finally { File.Delete(fault); }

        await TestEnv.WaitUntil(() => active.Provider.HoldsDevice, TimeSpan.FromSeconds(30), "the updated model back on the card");
        Assert.Equal(s_akd1000.Manifest.Version + ".9", active.Provider.ModelVersion);
        Assert.Null(active.CardFault);
        Assert.DoesNotContain("failed", active.Source, StringComparison.Ordinal);
        using (IImageClassifier classifier = active.CreateClassifier(out _))
            Assert.Contains(classifier.Classify(image).Label, QanaEdge.Model.Classes.Codes);
        stop.Cancel();
        try { Directory.Delete(root, recursive: true); } catch (IOException) { }
    }

    /// <summary>
    /// The card fails while classifying, and when it is tried again it refuses the model's program for its constraints
    /// (the emulator's refusal switch): the tries end after that one refusal, the model classifies on the managed
    /// engine, and its engine reason (the status's engine_reason) and one error in the log say that the card refused
    /// it, with the card's message, and that the card is not tried again for it. A model update then gets a try of
    /// its own and goes onto the card. Before, the refused model was programmed again at growing waits, for ever.
    /// </summary>
    [Fact]
    public async Task A_card_that_refuses_the_model_when_tried_again_after_a_fault_is_not_tried_again_for_that_model()
    {
        var (root, model, trust, state, signed, sha, _, _) = UpdateOnDisk("akida-refuse");
        string node = Path.Combine(_dev, "akida0");
        string fault = node + ".fault", refuse = node + ".refuse", refusals = node + ".refused";
        const string cardMessage = "program refused: 1 AKD1000 constraint violation(s): emulated";
        byte[] image = File.ReadAllBytes(TestEnv.RealImages(1, skip: 628)[0]);
        EngineChoice choice = Choose();
        var collected = new LogCollector();
        using var loggers = new SerilogLoggerFactory(new LoggerConfiguration().WriteTo.Sink(collected).CreateLogger(), dispose: true);
        using var stop = new CancellationTokenSource();
        using var active = new ActiveModel(ClassifierFactory.Create(s_akd1000, model, choice), "test");
        var failover = new CardFailover(active, choice, TimeSpan.FromMilliseconds(100), loggers.CreateLogger<CardFailover>(), stop.Token);
        var updates = new ModelUpdates(new ModelAtStart(active, AppliedUpdates.State.None, null), state, new DeviceTrust(trust, null), choice,
            NullLogger<ModelUpdates>.Instance, failover);
        int swaps = 0;
        active.Changed += () => Interlocked.Increment(ref swaps);
        Assert.True(active.Provider.HoldsDevice);

        File.WriteAllText(refuse, cardMessage);
        try
        {
            File.WriteAllText(fault, "");
            try
            {
                using IImageClassifier onCard = active.CreateClassifier(out int generation);
                failover.Leave(generation, Assert.Throws<QanaEdge.Akida.AkidaException>(() => onCard.Classify(image)));
            }
            finally { File.Delete(fault); }

            // The tries end by themselves (nothing stopped them) after one program, the one refused.
            await TestEnv.WaitUntil(() => failover.StopAsync().IsCompleted, TimeSpan.FromSeconds(30), "the tries to end after the card refused the model");
            Assert.False(stop.IsCancellationRequested);
            Assert.Single(File.ReadAllLines(refusals));
            Assert.Equal(cardMessage, failover.Refusal);
            Assert.NotNull(active.CardFault);
            Assert.False(active.Provider.HoldsDevice);
            Assert.StartsWith("managed IntegerEngine", active.Provider.EngineName, StringComparison.Ordinal);
            Assert.Contains($"the Akida card refused model {s_akd1000.Manifest.ModelId} {s_akd1000.Manifest.Version} ({cardMessage})",
                active.Provider.EngineReason, StringComparison.Ordinal);
            Assert.Contains("not tried again for this model", active.Provider.EngineReason, StringComparison.Ordinal);
            Assert.Equal(2, swaps);   // off the card, then the refusal: each re-publishes the status
            string refusal = Assert.Single(collected.At(Serilog.Events.LogEventLevel.Error), e => e.Contains("refused", StringComparison.Ordinal));
            Assert.Contains(cardMessage, refusal, StringComparison.Ordinal);
            Assert.Contains("will not be tried again for this model", refusal, StringComparison.Ordinal);
            Assert.DoesNotContain(collected.At(Serilog.Events.LogEventLevel.Warning), l => l.Contains("still not usable", StringComparison.Ordinal));
            using (IImageClassifier classifier = active.CreateClassifier(out _))
                Assert.Contains(classifier.Classify(image).Label, QanaEdge.Model.Classes.Codes);
        }
        finally { File.Delete(refuse); }

        // A model update may fit: the card is tried again with it.
        var (outcome, reason) = updates.Handle(signed, sha);
        Assert.True(outcome == ModelUpdates.Applied, reason);
        await TestEnv.WaitUntil(() => active.Provider.HoldsDevice, TimeSpan.FromSeconds(30), "the updated model on the card");
        Assert.Equal(s_akd1000.Manifest.Version + ".9", active.Provider.ModelVersion);
        Assert.Null(failover.Refusal);
        Assert.Null(active.CardFault);
        Assert.Single(File.ReadAllLines(refusals));
        stop.Cancel();
        await failover.StopAsync();
        try { Directory.Delete(root, recursive: true); } catch (IOException) { }
    }

    /// <summary>
    /// The same through the daemon: after the card faults and then refuses the model's program on the try, the retained
    /// status names the managed engine with the card's refusal as engine_reason, the log says once that the card will not
    /// be tried again for this model, and the image is classified on the managed engine, nothing quarantined.
    /// </summary>
    [Fact]
    public async Task Daemon_whose_card_refuses_the_model_after_a_fault_says_so_in_its_status_and_log()
    {
        string root = TestEnv.TempDir("akida-refuse-daemon");
        string model = Path.Combine(root, "akd1000-shaped-3.qana");
        PackageWriter.Save(s_akd1000, model);
        string node = Path.Combine(_dev, "akida0");
        string fault = node + ".fault", refuse = node + ".refuse";
        const string cardMessage = "program refused: 1 AKD1000 constraint violation(s): emulated";
        using var broker = new MosquittoBroker();
        await using var sub = new ResultSubscriber(broker.Port, "qana/akida6/#");
        await sub.ConnectAsync();
        await using var daemon = new DaemonRunner(root, broker.Port, "akida6", null,
            $"--Qana:Model={model}", $"--Qana:Akida:DevDir={_dev}", $"--Qana:Akida:Library={TestData.AkidaEmulator}", "--Qana:Akida:RetrySeconds=0.2");
        await daemon.StartAsync();
        JsonElement Last() => sub.Messages.Where(m => m.Topic == "qana/akida6/status").Select(m => JsonDocument.Parse(m.Payload).RootElement).Last();
        await TestEnv.WaitUntil(() => sub.Messages.Any(m => m.Topic == "qana/akida6/status")
            && Last().GetProperty("engine").GetString()!.StartsWith("akida", StringComparison.Ordinal), TimeSpan.FromSeconds(30), "a status naming the card");

        File.WriteAllText(refuse, cardMessage);
        try
        {
            File.WriteAllText(fault, "");
            try
            {
                TestEnv.Drop(TestEnv.RealImages(1, skip: 641)[0], daemon.Inbox);
                await TestEnv.WaitUntil(() => sub.Results.Count >= 1, TimeSpan.FromSeconds(60), "the image's result from the managed engine");
            }
            finally { File.Delete(fault); }
            await TestEnv.WaitUntil(() => Last().GetProperty("engine_reason").GetString()!.Contains("refused", StringComparison.Ordinal),
                TimeSpan.FromSeconds(30), "a status saying the card refused the model");
            // The swap onto the managed engine publishes that status; the refusal is logged after it.
            await TestEnv.WaitUntil(() => daemon.Log.At(Serilog.Events.LogEventLevel.Error).Any(e => e.Contains("refused", StringComparison.Ordinal)),
                TimeSpan.FromSeconds(30), "the card's refusal in the log");
        }
        finally { File.Delete(refuse); }
        JsonElement status = Last();
        Assert.Equal("online", status.GetProperty("state").GetString());
        Assert.StartsWith("managed", status.GetProperty("engine").GetString(), StringComparison.Ordinal);
        string reason = status.GetProperty("engine_reason").GetString()!;
        Assert.Contains($"the Akida card refused model {s_akd1000.Manifest.ModelId} {s_akd1000.Manifest.Version} ({cardMessage})", reason, StringComparison.Ordinal);
        Assert.Contains("not tried again for this model", reason, StringComparison.Ordinal);
        string refusal = Assert.Single(daemon.Log.At(Serilog.Events.LogEventLevel.Error), e => e.Contains("refused", StringComparison.Ordinal));
        Assert.Contains("will not be tried again for this model", refusal, StringComparison.Ordinal);
        Assert.DoesNotContain(daemon.Log.At(Serilog.Events.LogEventLevel.Warning), l => l.Contains("still not usable", StringComparison.Ordinal));
        Assert.Single(File.ReadAllLines(node + ".refused"));
        Assert.False(Directory.Exists(daemon.QuarantineDir) && Directory.EnumerateFileSystemEntries(daemon.QuarantineDir).Any(),
            "nothing may be quarantined for the card's fault");
        await daemon.StopAsync();
        try { Directory.Delete(root, recursive: true); } catch (IOException) { }
    }

    /// <summary>
    /// The card fails while classifying and then does not open when tried again (its node gone: a device error, not a
    /// refusal of the model): it is tried again and again, each wait twice the last, and gets the model back once its
    /// node returns.
    /// </summary>
    [Fact]
    public async Task A_card_that_fails_and_then_does_not_open_is_still_tried_again()
    {
        string root = TestEnv.TempDir("akida-fault-then-gone");
        string model = Path.Combine(root, "akd1000-shaped-3.qana");
        PackageWriter.Save(s_akd1000, model);
        string node = Path.Combine(_dev, "akida0");
        string fault = node + ".fault";
        byte[] image = File.ReadAllBytes(TestEnv.RealImages(1, skip: 629)[0]);
        EngineChoice choice = Choose();
        var collected = new LogCollector();
        using var loggers = new SerilogLoggerFactory(new LoggerConfiguration().WriteTo.Sink(collected).CreateLogger(), dispose: true);
        using var stop = new CancellationTokenSource();
        using var active = new ActiveModel(ClassifierFactory.Create(s_akd1000, model, choice), "test");
        var failover = new CardFailover(active, choice, TimeSpan.FromMilliseconds(100), loggers.CreateLogger<CardFailover>(), stop.Token);

        File.WriteAllText(fault, "");
        File.Delete(node);
        try
        {
            try
            {
                using IImageClassifier onCard = active.CreateClassifier(out int generation);
                failover.Leave(generation, Assert.Throws<QanaEdge.Akida.AkidaException>(() => onCard.Classify(image)));
            }
            finally { File.Delete(fault); }
            await TestEnv.WaitUntil(() => collected.At(Serilog.Events.LogEventLevel.Warning)
                .Count(l => l.Contains("still not usable", StringComparison.Ordinal) && l.Contains("no such device", StringComparison.Ordinal)) >= 2,
                TimeSpan.FromSeconds(30), "two failed tries");
            Assert.False(failover.StopAsync().IsCompleted, "the tries go on after a device error");
            Assert.Null(failover.Refusal);
            Assert.False(active.Provider.HoldsDevice);
            Assert.DoesNotContain("refused", active.Provider.EngineReason, StringComparison.Ordinal);
            Assert.DoesNotContain(collected.At(Serilog.Events.LogEventLevel.Error), e => e.Contains("refused", StringComparison.Ordinal));
        }
        finally { File.WriteAllBytes(node, []); }

        await TestEnv.WaitUntil(() => active.Provider.HoldsDevice, TimeSpan.FromSeconds(30), "the model back on the card");
        await failover.StopAsync().WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Null(active.CardFault);
        stop.Cancel();
        try { Directory.Delete(root, recursive: true); } catch (IOException) { }
    }

    /// <summary>
    /// A temp folder with the akd1000-shaped model saved in it, a trust folder with a new vendor key, and a newer
    /// version of the same model, with golden vectors (they run on the card before it is swapped in), signed by it; and
    /// a version between the two of the paper8 profile, which the card cannot hold, signed too.
    /// </summary>
    private static (string Root, string Model, string Trust, string State, byte[] Signed, string Sha, byte[] Paper8, string Paper8Sha) UpdateOnDisk(string name)
    {
        string root = TestEnv.TempDir(name);
        string model = Path.Combine(root, "akd1000-shaped-3.qana"), trust = Path.Combine(root, "trust"), state = Path.Combine(root, "state");
        PackageWriter.Save(s_akd1000, model);
        Directory.CreateDirectory(trust);
        using var vendor = SigningKey.Generate(SignerRole.Vendor);
        File.WriteAllText(Path.Combine(trust, "vendor.pub"), vendor.PublicKey.ToText());
        byte[] signed = PackageSigner.Sign(PackageWriter.ToBytes(WithGoldenVectors(s_akd1000, s_akd1000.Manifest.Version + ".9")), vendor);
        byte[] paper8 = PackageSigner.Sign(PackageWriter.ToBytes(
            WithGoldenVectors(s_akd1000, s_akd1000.Manifest.Version + ".8", QuantizationProfile.Paper8)), vendor);
        static string Sha(byte[] b) => Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(b));
        return (root, model, trust, state, signed, Sha(signed), paper8, Sha(paper8));
    }
}
