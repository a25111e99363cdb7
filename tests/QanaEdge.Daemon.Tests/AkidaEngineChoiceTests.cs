using System.Text.Json;
using QanaEdge.Daemon.Classification;
using QanaEdge.Daemon.Configuration;
using QanaEdge.Daemon.Tests.Infrastructure;
using QanaEdge.Imaging;
using QanaEdge.Model;
using QanaEdge.Model.Packaging;
using QanaEdge.TestSupport;

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
}
