using System.Text.Json;
using QanaEdge.Daemon.Tests.Infrastructure;

namespace QanaEdge.Daemon.Tests;

/// <summary>
/// The idle power baseline is the board at rest: with a backlog waiting in the inbox at start, the daemon takes its
/// IdleSamples readings before the first capture is classified. The sensor is an INA226 behind the kernel's hwmon
/// driver, as a sysfs tree of the driver's files.
/// </summary>
public sealed class PowerBaselineTests : IDisposable
{
    private readonly MosquittoBroker _broker = new();
    private readonly string _root = TestEnv.TempDir("baseline");

    public void Dispose()
    {
        _broker.Dispose();
        try { Directory.Delete(_root, recursive: true); } catch (IOException) { }
    }

    /// <summary>
    /// An INA226 as its hwmon driver shows it, in <paramref name="folder"/>: 5 V (or <paramref name="busMillivolts"/>,
    /// which may be text that does not parse), 400 mA, 2 W, updated every 2 ms. Returns the folder.
    /// </summary>
    private static string Ina226(string folder, string busMillivolts = "5000")
    {
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, "name"), "ina226\n");
        File.WriteAllText(Path.Combine(folder, "in1_input"), busMillivolts + "\n");   // mV
        File.WriteAllText(Path.Combine(folder, "curr1_input"), "400\n");              // mA
        File.WriteAllText(Path.Combine(folder, "power1_input"), "2000000\n");         // µW
        File.WriteAllText(Path.Combine(folder, "update_interval"), "2\n");            // ms
        return folder;
    }

    [Fact]
    public async Task A_backlog_at_start_waits_for_the_idle_baseline_so_every_result_has_its_energy()
    {
        string hwmon = Ina226(Path.Combine(_root, "hwmon", "hwmon3"));

        string[] images = TestEnv.RealImages(8, skip: 960);
        string inbox = Path.Combine(_root, "inbox");
        Directory.CreateDirectory(inbox);
        foreach (string image in images) TestEnv.Drop(image, inbox);

        await using var sub = new ResultSubscriber(_broker.Port, "qana/devpw/results");
        await sub.ConnectAsync();
        // 1,000 readings every 2 ms: at least 2 s of baseline, while the backlog would be classified in far less.
        await using var daemon = new DaemonRunner(_root, _broker.Port, "devpw", null, "--Qana:Power:Sensor=Hwmon",
            $"--Qana:Power:HwmonRoot={Path.Combine(_root, "hwmon")}", "--Qana:Power:HwmonChip=ina226", "--Qana:Power:IdleSamples=1000");
        await daemon.StartAsync();
        await TestEnv.WaitUntil(() => sub.Results.Count >= images.Length, TimeSpan.FromSeconds(90), "a result for each image of the backlog");

        // Before the baseline a result has no energy; every one of the backlog has it, measured against the 2 W at rest.
        JsonElement[] results = [.. sub.Results.Values.Select(q => q.First())];
        Assert.All(results, r => Assert.Equal(JsonValueKind.Number, r.GetProperty("energy_mj").ValueKind));
        var lines = daemon.Log.Events.Select(e => e.Message).ToList();
        int baseline = lines.FindIndex(l => l.StartsWith("Idle power baseline 2.000 W", StringComparison.Ordinal));
        int started = lines.FindIndex(l => l.StartsWith("Pipeline started", StringComparison.Ordinal));
        Assert.True(baseline >= 0 && baseline < started, string.Join(" | ", lines.Take(20)));
    }

    /// <summary>
    /// A configured sensor that is missing at start (here no INA226 under the hwmon root, as before its driver loads)
    /// does not keep the device from classifying: the image gets its result with energy_mj null, and the log and the
    /// retained status say why. It used to stop the daemon at start, in a restart loop that classified nothing.
    /// </summary>
    [Fact]
    public async Task A_configured_sensor_missing_at_start_leaves_energy_null_and_the_daemon_classifying()
    {
        string hwmon = Directory.CreateDirectory(Path.Combine(_root, "hwmon-empty")).FullName;
        await using var sub = new ResultSubscriber(_broker.Port, "qana/devnopw/#");
        await sub.ConnectAsync();
        await using var daemon = new DaemonRunner(_root, _broker.Port, "devnopw", null, "--Qana:Power:Sensor=Hwmon",
            $"--Qana:Power:HwmonRoot={hwmon}", "--Qana:Power:HwmonChip=ina226");
        await daemon.StartAsync();
        TestEnv.Drop(TestEnv.RealImages(1, skip: 970)[0], daemon.Inbox);
        await TestEnv.WaitUntil(() => sub.Results.Count == 1, TimeSpan.FromSeconds(60), "the image's result");

        Assert.Equal(JsonValueKind.Null, sub.Results.Values.Single().First().GetProperty("energy_mj").ValueKind);
        Assert.Contains(daemon.Log.Events, e => e.Level == Serilog.Events.LogEventLevel.Error
            && e.Message.StartsWith("POWER: ", StringComparison.Ordinal) && e.Message.Contains("running without a power sensor", StringComparison.Ordinal));
        JsonElement status = sub.Messages.Where(m => m.Topic == "qana/devnopw/status").Select(m => JsonDocument.Parse(m.Payload).RootElement).Last();
        Assert.Equal("online", status.GetProperty("state").GetString());
        Assert.Contains("ina226", status.GetProperty("power_error").GetString(), StringComparison.Ordinal);
    }
    /// <summary>
    /// A sensor that answers only after the start's wait learns its baseline once the board is at rest: every capture
    /// the pipeline takes ends its work when it is settled, whether stored, stored again (a duplicate) or quarantined.
    /// One that did not would keep the board busy for the meter, and idle_w and every energy_mj null for good.
    /// </summary>
    [Fact]
    public async Task A_sensor_that_answers_late_learns_its_baseline_once_every_capture_is_settled()
    {
        string hwmon = Ina226(Path.Combine(_root, "hwmon-late", "hwmon0"), busMillivolts: "not yet"); // reads fail: no baseline at start

        string[] images = TestEnv.RealImages(5, skip: 980);
        string inbox = Path.Combine(_root, "inbox");
        Directory.CreateDirectory(inbox);
        TestEnv.Drop(images[0], inbox);
        TestEnv.Drop(images[0], inbox, "again-" + Path.GetFileName(images[0]));          // the same image: a duplicate
        TestEnv.DropBytes("not an image at all"u8.ToArray(), inbox, "junk.jpg");          // quarantined

        await using var sub = new ResultSubscriber(_broker.Port, "qana/devlate/#");
        await sub.ConnectAsync();
        await using var daemon = new DaemonRunner(_root, _broker.Port, "devlate", null, "--Qana:Power:Sensor=Hwmon",
            $"--Qana:Power:HwmonRoot={Path.GetDirectoryName(hwmon)}", "--Qana:Power:HwmonChip=ina226", "--Qana:Power:IdleSamples=20",
            "--Qana:Power:TelemetrySeconds=0.2");
        await daemon.StartAsync();
        // The acknowledger moves a duplicate out of the inbox first and logs it after: wait for its line too.
        await TestEnv.WaitUntil(() => Directory.GetFiles(inbox).Length == 0 && sub.Results.Count == 1
                && daemon.Log.Events.Any(e => e.Message.StartsWith("Duplicate capture", StringComparison.Ordinal)), TimeSpan.FromSeconds(90),
            "the three captures settled", () => string.Join(", ", Directory.GetFiles(inbox).Select(Path.GetFileName)));
        Assert.Contains(daemon.Log.Events, e => e.Message.StartsWith("Idle power baseline not known", StringComparison.Ordinal));
        // The sampler starts after the daemon's handlers are attached: the first failed read is in the log.
        Assert.Contains(daemon.Log.Events, e => e.Message.StartsWith("Power read failed (1 since the sensor last read steadily;", StringComparison.Ordinal));
        Assert.Contains(daemon.Log.Events, e => e.Message.StartsWith("Duplicate capture", StringComparison.Ordinal));
        Assert.True(File.Exists(Path.Combine(daemon.QuarantineDir, "junk.jpg.reason")));

        File.WriteAllText(Path.Combine(hwmon, "in1_input"), "5000\n");
        await TestEnv.WaitUntil(() => IdleWatts(sub) is not null, TimeSpan.FromSeconds(60), "the idle baseline in the power telemetry");
        Assert.Equal(2.0, IdleWatts(sub));
        // At rest the sampler reads once a second and the first capture wakes it; on a loaded machine it can be
        // scheduled only after a 5 ms inference ended, and the worker then waits for its reading, but only for a batch
        // window (200 ms). So images are dropped one at a time until one is charged: a baseline that never charged any
        // would fail.
        JsonElement? charged = null;
        for (int i = 1; i < images.Length && charged is null; i++)
        {
            TestEnv.Drop(images[i], inbox);
            await TestEnv.WaitUntil(() => sub.Results.Count == i + 1, TimeSpan.FromSeconds(60), $"the result of image {i + 1}");
            charged = sub.Results.Values.Select(q => q.First()).Where(r => r.GetProperty("energy_mj").ValueKind != JsonValueKind.Null)
                .Select(r => (JsonElement?)r).FirstOrDefault();
        }
        Assert.NotNull(charged);
        Assert.Equal(JsonValueKind.Number, charged.Value.GetProperty("energy_mj").ValueKind);
    }

    /// <summary>
    /// A baseline configured in Qana:Power:IdleWatts is used as it is: no wait at start, where IdleSamples readings
    /// would take 200 s here, and every result of a backlog has its energy against it. The sensor reads 2 W, the
    /// configured board idles at 1.5 W, so each image is charged 0.5 W over its inference.
    /// </summary>
    [Fact]
    public async Task A_configured_idle_baseline_is_used_without_waiting_and_gives_every_result_its_energy()
    {
        string hwmon = Ina226(Path.Combine(_root, "hwmon-set", "hwmon1"));
        string[] images = TestEnv.RealImages(3, skip: 985);
        string inbox = Directory.CreateDirectory(Path.Combine(_root, "inbox")).FullName;
        foreach (string image in images) TestEnv.Drop(image, inbox);

        await using var sub = new ResultSubscriber(_broker.Port, "qana/devidle/results");
        await sub.ConnectAsync();
        await using var daemon = new DaemonRunner(_root, _broker.Port, "devidle", null, "--Qana:Power:Sensor=Hwmon",
            $"--Qana:Power:HwmonRoot={Path.GetDirectoryName(hwmon)}", "--Qana:Power:HwmonChip=ina226", "--Qana:Power:IdleSamples=100000",
            "--Qana:Power:IdleWatts=1.5");
        await daemon.StartAsync();
        await TestEnv.WaitUntil(() => sub.Results.Count >= images.Length, TimeSpan.FromSeconds(60), "a result for each image of the backlog");

        Assert.All(sub.Results.Values.Select(q => q.First()), r => Assert.True(r.GetProperty("energy_mj").GetDouble() > 0, r.ToString()));
        Assert.Contains(daemon.Log.Events, e => e.Message == "Idle power baseline 1.500 W from Qana:Power:IdleWatts (configured, not measured)");
        Assert.DoesNotContain(daemon.Log.Events, e => e.Message.StartsWith("Idle power baseline not known", StringComparison.Ordinal));
    }

    /// <summary>
    /// A sensor that stops answering leaves its last good reading in the power telemetry: it says when that reading was
    /// taken (read_at), which stays put while the reads fail, as the publishing time (at) moves on. Before, the stale
    /// reading went out under a fresh timestamp alone, as the board's power now.
    /// </summary>
    [Fact]
    public async Task Power_telemetry_says_when_its_reading_was_taken_and_a_failing_sensor_does_not_refresh_it()
    {
        string hwmon = Ina226(Path.Combine(_root, "hwmon-stale", "hwmon0"));

        await using var sub = new ResultSubscriber(_broker.Port, "qana/devstale/power");
        await sub.ConnectAsync();
        await using var daemon = new DaemonRunner(_root, _broker.Port, "devstale", null, "--Qana:Power:Sensor=Hwmon",
            $"--Qana:Power:HwmonRoot={Path.GetDirectoryName(hwmon)}", "--Qana:Power:HwmonChip=ina226", "--Qana:Power:IdleSamples=5",
            "--Qana:Power:TelemetrySeconds=0.2");
        await daemon.StartAsync();
        await TestEnv.WaitUntil(() => Telemetry(sub).Count >= 2, TimeSpan.FromSeconds(60), "power telemetry of a working sensor");
        JsonElement working = Telemetry(sub)[^1];
        Assert.Equal(0, working.GetProperty("read_failures").GetInt64());
        DateTime freshReadAt = working.GetProperty("read_at").GetDateTime();
        Assert.True(working.GetProperty("at").GetDateTime() - freshReadAt < TimeSpan.FromSeconds(30));

        File.WriteAllText(Path.Combine(hwmon, "in1_input"), "gone\n");   // every read fails from now on
        DateTime brokeAt = DateTime.UtcNow;
        await TestEnv.WaitUntil(() => Telemetry(sub)[^1] is var last && last.GetProperty("read_failures").GetInt64() > 0
                && last.GetProperty("at").GetDateTime() > last.GetProperty("read_at").GetDateTime().AddSeconds(1),
            TimeSpan.FromSeconds(60), "telemetry a second after the last good reading, with failed reads");
        JsonElement stale = Telemetry(sub)[^1];
        DateTime staleReadAt = stale.GetProperty("read_at").GetDateTime();
        Assert.True(staleReadAt <= brokeAt.AddSeconds(1), $"read_at {staleReadAt:O} is after the sensor broke ({brokeAt:O})");
        Assert.Equal(5.0, stale.GetProperty("bus_v").GetDouble());    // the last good reading, not a made-up one
    }

    private static List<JsonElement> Telemetry(ResultSubscriber sub)
        => sub.Messages.Where(m => m.Topic == "qana/devstale/power").Select(m => JsonDocument.Parse(m.Payload!).RootElement).ToList();

    /// <summary>idle_w of the last power telemetry message, or null.</summary>
    private static double? IdleWatts(ResultSubscriber sub)
    {
        var last = sub.Messages.LastOrDefault(m => m.Topic == "qana/devlate/power");
        if (last.Payload is null) return null;
        JsonElement idle = JsonDocument.Parse(last.Payload).RootElement.GetProperty("idle_w");
        return idle.ValueKind == JsonValueKind.Number ? idle.GetDouble() : null;
    }
}
