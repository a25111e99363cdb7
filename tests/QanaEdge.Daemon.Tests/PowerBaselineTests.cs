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

    [Fact]
    public async Task A_backlog_at_start_waits_for_the_idle_baseline_so_every_result_has_its_energy()
    {
        string hwmon = Path.Combine(_root, "hwmon", "hwmon3");
        Directory.CreateDirectory(hwmon);
        File.WriteAllText(Path.Combine(hwmon, "name"), "ina226\n");
        File.WriteAllText(Path.Combine(hwmon, "in1_input"), "5000\n");      // mV
        File.WriteAllText(Path.Combine(hwmon, "curr1_input"), "400\n");     // mA
        File.WriteAllText(Path.Combine(hwmon, "power1_input"), "2000000\n"); // µW
        File.WriteAllText(Path.Combine(hwmon, "update_interval"), "2\n");    // ms

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
}
