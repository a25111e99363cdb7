using System.Buffers;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Protocol;
using QanaEdge.Daemon.Tests.Infrastructure;
using QanaEdge.Model.Packaging;
using QanaEdge.TestSupport;

// Usage: QanaEdge.Daemon.Bench QANAD [--model PKG] [--rate 50] [--seconds 20] [--burst 1000] [--idle 20] [--embedded] [--Qana:Key=value ...]
// QANAD is the daemon to measure: the Native-AOT binary (out/linux-x64/qanad) or qanad.dll (run with dotnet).
// 1. Throughput: `burst` distinct images dropped at once (temp name, then rename); images/s = burst / (last result − first drop).
// 2. Latency: images dropped at `rate` per second for `seconds`; per image, rename → result received by a subscriber on
//    the same broker (the daemon's PUBACK precedes the broker's forward, so this bounds file-landed → PUBACK from above).
// 3. RSS: the daemon's VmHWM (peak resident set) and VmRSS at the end, from /proc.
// 0. Idle, after the warm-up and before the burst, for `idle` seconds: the daemon's context switches per second (summed
//    over its threads) and CPU time per second, with the broker's measured over the same window. A device waits for
//    captures most of its day, so these are most of what the daemon costs in energy.
// Arguments of the form --Qana:Key=value go to the daemon as they are (e.g. --Qana:Fallback=Symmetries).
// --embedded: the daemon's own broker (no Qana:Mqtt:Host, as shipped) instead of mosquitto; the subscriber connects to it.
// --store (alone): the result store on a real LiteDB file, in this process (StoreBench).
if (args is ["--store"]) { StoreBench.Run(); return 0; }
if (args.Length < 1) { Console.Error.WriteLine("usage: QanaEdge.Daemon.Bench QANAD [--model PKG] [--rate N] [--seconds S] [--burst N] [--idle S] [--embedded] [--Qana:Key=value ...]"); return 2; }
string qanad = Path.GetFullPath(args[0]);
string Arg(string name, string fallback) { int i = Array.IndexOf(args, name); return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback; }
int rate = int.Parse(Arg("--rate", "50"), CultureInfo.InvariantCulture);
int seconds = int.Parse(Arg("--seconds", "20"), CultureInfo.InvariantCulture);
int burst = int.Parse(Arg("--burst", "1000"), CultureInfo.InvariantCulture);
int idleSeconds = int.Parse(Arg("--idle", "20"), CultureInfo.InvariantCulture);
bool embedded = args.Contains("--embedded");
string? model = Arg("--model", "");
string modelNote;
if (string.IsNullOrEmpty(model))
{
    model = Path.Combine(TestEnv.TempDir("bench-model"), "qana-shaped-7.qana");
    PackageWriter.Save(TestGraphs.QanaShaped(7), model);
    modelNote = "TestGraphs.QanaShaped(7) (QANA-shaped, random weights, manifest τ = 0.5)";
}
else modelNote = Path.GetFileName(model);

using MosquittoBroker? broker = embedded ? null : new MosquittoBroker();
int port = broker?.Port ?? TestEnv.FreeTcpPort();
string root = TestEnv.TempDir("bench");
string inbox = Path.Combine(root, "inbox");
Directory.CreateDirectory(inbox);
var received = new ConcurrentDictionary<string, long>();
// The daemon's own latency_ms per result (decode, crop and network run), to split the end-to-end latency.
var classifyMs = new ConcurrentDictionary<string, double>();
// Results that averaged more views than one: the fallback's share of the work.
var fellBack = new ConcurrentDictionary<string, bool>();
var client = new MqttClientFactory().CreateMqttClient();
client.ApplicationMessageReceivedAsync += e =>
{
    long now = Stopwatch.GetTimestamp();
    using var doc = JsonDocument.Parse(e.ApplicationMessage.Payload.ToArray());
    string sha = doc.RootElement.GetProperty("image_sha256").GetString()!;
    received.TryAdd(sha, now);
    classifyMs.TryAdd(sha, doc.RootElement.GetProperty("latency_ms").GetDouble());
    fellBack.TryAdd(sha, doc.RootElement.GetProperty("tiled").GetBoolean() || doc.RootElement.GetProperty("symmetrized").GetBoolean());
    return Task.CompletedTask;
};

var psi = qanad.EndsWith(".dll", StringComparison.Ordinal) ? new ProcessStartInfo("dotnet", ["exec", qanad]) : new ProcessStartInfo(qanad);
foreach (string a in new[] { $"--Qana:Inbox={inbox}", $"--Qana:StateDir={Path.Combine(root, "state")}", "--Qana:DeviceId=bench",
    $"--Qana:Mqtt:Port={port}", $"--Qana:Model={model}", "--Qana:Done=Delete", "--Qana:RescanSeconds=5" })
    psi.ArgumentList.Add(a);
if (broker is not null) psi.ArgumentList.Add("--Qana:Mqtt:Host=127.0.0.1");
string[] daemonArgs = args.Skip(1).Where(a => a.StartsWith("--Qana:", StringComparison.Ordinal) && a.Contains('=')).ToArray();
foreach (string a in daemonArgs) psi.ArgumentList.Add(a);
psi.RedirectStandardOutput = true;
psi.RedirectStandardError = true;
psi.Environment["Serilog__MinimumLevel"] = "Warning";
using var daemon = Process.Start(psi)!;
daemon.OutputDataReceived += (_, _) => { };
daemon.ErrorDataReceived += (_, e) => { if (e.Data is not null) Console.Error.WriteLine(e.Data); };
daemon.BeginOutputReadLine();
daemon.BeginErrorReadLine();

// The subscriber connects once the broker listens: mosquitto at once, the embedded one once the daemon has started it.
var connectedFor = Stopwatch.StartNew();
while (true)
{
    try
    {
        await client.ConnectAsync(new MqttClientOptionsBuilder().WithTcpServer("127.0.0.1", port).WithProtocolVersion(MqttProtocolVersion.V500).Build());
        break;
    }
    catch (Exception) when (connectedFor.Elapsed < TimeSpan.FromSeconds(60) && !daemon.HasExited) { await Task.Delay(100); }
}
await client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter("qana/bench/results", MqttQualityOfServiceLevel.AtLeastOnce).Build());

string[] all = Directory.GetFiles(TestEnv.ImagesDir, "ISIC_*.jpg").Order(StringComparer.Ordinal).ToArray();
int latencyCount = rate * seconds;
if (all.Length < burst + latencyCount + 20) { Console.Error.WriteLine($"need {burst + latencyCount + 20} images, have {all.Length}"); return 1; }
// Pre-read the images so the dropper measures the daemon, not our disk reads.
byte[][] Load(IEnumerable<string> files) => files.Select(File.ReadAllBytes).ToArray();
string Sha(byte[] b) => Convert.ToHexStringLower(SHA256.HashData(b));
void Drop(byte[] bytes, string name)
{
    string tmp = Path.Combine(inbox, "." + name + ".tmp");
    File.WriteAllBytes(tmp, bytes);
    File.Move(tmp, Path.Combine(inbox, name));
}
async Task WaitFor(ICollection<string> shas, TimeSpan timeout)
{
    var sw = Stopwatch.StartNew();
    while (shas.Any(s => !received.ContainsKey(s)))
    {
        if (sw.Elapsed > timeout) throw new TimeoutException($"{shas.Count(s => !received.ContainsKey(s))} results missing after {timeout}");
        await Task.Delay(10);
    }
}

// Warm-up: 20 images, not measured (JIT for the non-AOT build, page cache, engine buffers).
var warm = Load(all.Take(20));
for (int i = 0; i < warm.Length; i++) Drop(warm[i], $"warm{i}.jpg");
await WaitFor(warm.Select(Sha).ToArray(), TimeSpan.FromSeconds(120));

// 0. Idle: nothing dropped, results drained; what the daemon (and the broker beside it) wake for on their own.
await Task.Delay(TimeSpan.FromSeconds(2));
// With the embedded broker its cost is the daemon's; the broker's figures are then left out.
ProcessTicks BrokerTicks() => broker is null ? default : ProcessTicks.Read(broker.ProcessId);
var (daemonIdle0, brokerIdle0) = (ProcessTicks.Read(daemon.Id), BrokerTicks());
await Task.Delay(TimeSpan.FromSeconds(idleSeconds));
var (daemonIdle, brokerIdle) = (ProcessTicks.Read(daemon.Id) - daemonIdle0, BrokerTicks() - brokerIdle0);

// 1. Throughput.
var burstBytes = Load(all.Skip(20).Take(burst));
var burstSha = burstBytes.Select(Sha).ToArray();
long t0 = Stopwatch.GetTimestamp();
for (int i = 0; i < burstBytes.Length; i++) Drop(burstBytes[i], $"b{i}.jpg");
await WaitFor(burstSha, TimeSpan.FromSeconds(600));
double burstSeconds = Stopwatch.GetElapsedTime(t0, burstSha.Max(s => received[s])).TotalSeconds;
double imagesPerSecond = burst / burstSeconds;

// 2. Latency at a fixed offered rate.
var latBytes = Load(all.Skip(20 + burst).Take(latencyCount));
var latSha = latBytes.Select(Sha).ToArray();
var dropped = new long[latencyCount];
long start = Stopwatch.GetTimestamp();
double period = Stopwatch.Frequency / (double)rate;
for (int i = 0; i < latencyCount; i++)
{
    long due = start + (long)(i * period);
    while (Stopwatch.GetTimestamp() < due)
    {
        double waitMs = (due - Stopwatch.GetTimestamp()) * 1000.0 / Stopwatch.Frequency;
        if (waitMs > 2) Thread.Sleep((int)(waitMs - 1)); else Thread.SpinWait(50);
    }
    Drop(latBytes[i], $"l{i}.jpg");
    dropped[i] = Stopwatch.GetTimestamp();
}
await WaitFor(latSha, TimeSpan.FromSeconds(600));
double[] lat = latSha.Select((s, i) => Stopwatch.GetElapsedTime(dropped[i], received[s]).TotalMilliseconds).Order().ToArray();
double P(double q) => lat[Math.Min(lat.Length - 1, (int)Math.Ceiling(q * lat.Length) - 1)];
double[] cls = latSha.Select(s => classifyMs[s]).Order().ToArray();
double C(double q) => cls[Math.Min(cls.Length - 1, (int)Math.Ceiling(q * cls.Length) - 1)];

// 3. Memory.
string status = File.ReadAllText($"/proc/{daemon.Id}/status");
double Kb(string key) => double.Parse(status.Split('\n').First(l => l.StartsWith(key, StringComparison.Ordinal)).Split(':')[1].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
double hwmMb = Kb("VmHWM") / 1024, rssMb = Kb("VmRSS") / 1024;

Process.Start("kill", ["-TERM", daemon.Id.ToString(CultureInfo.InvariantCulture)])!.WaitForExit();
daemon.WaitForExit(30_000);
await client.DisconnectAsync();

var result = new Dictionary<string, object>
{
    ["daemon"] = Path.GetFileName(qanad), ["model"] = modelNote, ["cores"] = Environment.ProcessorCount,
    ["daemon_args"] = string.Join(' ', daemonArgs),
    ["fallback_share"] = fellBack.IsEmpty ? 0 : Math.Round((double)fellBack.Values.Count(v => v) / fellBack.Count, 3),
    ["burst_images"] = burst, ["images_per_s"] = Math.Round(imagesPerSecond, 1),
    ["offered_rate_per_s"] = rate, ["latency_images"] = latencyCount,
    ["latency_ms_p50"] = Math.Round(P(0.50), 2), ["latency_ms_p99"] = Math.Round(P(0.99), 2), ["latency_ms_max"] = Math.Round(lat[^1], 2),
    ["classify_ms_p50"] = Math.Round(C(0.50), 2), ["classify_ms_p99"] = Math.Round(C(0.99), 2),
    ["rss_peak_mb"] = Math.Round(hwmMb, 1), ["rss_end_mb"] = Math.Round(rssMb, 1),
    ["idle_s"] = idleSeconds,
    ["idle_switches_per_s"] = Math.Round(daemonIdle.Switches / (double)idleSeconds, 1), ["idle_cpu_ms_per_s"] = Math.Round(daemonIdle.CpuMs / idleSeconds, 2),
    ["broker"] = broker is null ? "embedded" : "mosquitto",
    ["date_utc"] = DateTime.UtcNow.ToString("yyyy-MM-dd HH:mm", CultureInfo.InvariantCulture),
};
if (broker is not null)
{
    result["broker_idle_switches_per_s"] = Math.Round(brokerIdle.Switches / (double)idleSeconds, 1);
    result["broker_idle_cpu_ms_per_s"] = Math.Round(brokerIdle.CpuMs / idleSeconds, 2);
}
Console.WriteLine(JsonSerializer.Serialize(result, BenchJson.Default.DictionaryStringObject));
try { Directory.Delete(root, recursive: true); } catch (IOException) { }
return 0;

/// <summary>
/// A process's context switches (voluntary and not, summed over its threads: the leader's own status counts only the
/// main thread) and CPU time (utime + stime), from /proc. A thread that ends between two reads takes its share with it.
/// </summary>
internal readonly record struct ProcessTicks(long Switches, double CpuMs)
{
    public static ProcessTicks Read(int pid)
    {
        long switches = 0;
        foreach (string task in Directory.GetDirectories($"/proc/{pid}/task"))
        {
            try
            {
                foreach (string line in File.ReadLines(Path.Combine(task, "status")))
                    if (line.StartsWith("voluntary_ctxt_switches:", StringComparison.Ordinal) || line.StartsWith("nonvoluntary_ctxt_switches:", StringComparison.Ordinal))
                        switches += long.Parse(line[(line.IndexOf(':') + 1)..].Trim(), CultureInfo.InvariantCulture);
            }
            catch (IOException) { }   // the thread ended meanwhile
        }
        // Fields 14 and 15 of stat, in clock ticks (USER_HZ, 100 on Linux); counted after the ")" that ends the name.
        string stat = File.ReadAllText($"/proc/{pid}/stat");
        string[] fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        double ticks = double.Parse(fields[11], CultureInfo.InvariantCulture) + double.Parse(fields[12], CultureInfo.InvariantCulture);
        return new ProcessTicks(switches, ticks * 10);
    }

    public static ProcessTicks operator -(ProcessTicks a, ProcessTicks b) => new(a.Switches - b.Switches, a.CpuMs - b.CpuMs);
}

[System.Text.Json.Serialization.JsonSerializable(typeof(Dictionary<string, object>))]
[System.Text.Json.Serialization.JsonSerializable(typeof(double))]
[System.Text.Json.Serialization.JsonSerializable(typeof(int))]
[System.Text.Json.Serialization.JsonSerializable(typeof(string))]
internal sealed partial class BenchJson : System.Text.Json.Serialization.JsonSerializerContext;
