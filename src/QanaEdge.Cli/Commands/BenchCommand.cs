using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using QanaEdge.Model.Onnx;
using QanaEdge.Model.Packaging;
using QanaEdge.Runtime;
using QanaEdge.Runtime.Kernels;

namespace QanaEdge.Cli.Commands;

/// <summary>
/// <c>qana bench [--model PKG] [--json FILE|-] [--runs N]</c>: latency of the integer engine on one thread
/// (p50/p99 per image), throughput on one and on all cores, MACs, the int8 roofline of this CPU, managed
/// allocation per image, events per image, and a peer measured in the same run: ONNX Runtime on one thread
/// running the float32 export of the same graph (<see cref="OnnxExporter"/>).
/// </summary>
public sealed class BenchCommand : IVerb
{
    public Command Create(CliContext context)
    {
        var model = new Option<string?>("--model") { Description = "package to measure (.qana); default: the firmware-models default" };
        var json = new Option<string?>("--json") { Description = "also write the results as JSON to FILE ('-' for standard output)" };
        var runs = new Option<int>("--runs") { Description = "timed images per measurement (default 500)", DefaultValueFactory = _ => 500 };
        var noPeer = new Option<bool>("--no-peer") { Description = "skip the ONNX Runtime peer" };
        var command = new Command("bench", "Measure the integer engine (latency, throughput, roofline, allocation, events) against ONNX Runtime.")
            { model, json, runs, noPeer };
        command.SetAction(parse =>
        {
            int n = parse.GetValue(runs);
            // Each timed run keeps its time for the percentiles: a bound keeps a mistyped count a usage error rather
            // than an out-of-memory failure (2,000,000,000 was one).
            if (n is < 10 or > MaxRuns) throw new UsageException($"--runs must be between 10 and {MaxRuns}");
            string? jsonPath = parse.GetValue(json);
            // '-' is standard output, as for evaluate's --json: it was taken as a file name and a file called '-' was written.
            bool jsonToOut = jsonPath == "-";
            if (jsonPath is not null && !jsonToOut) Files.CheckWritable(jsonPath, "--json");   // before the measurement, not after
            string path = DefaultModel.Locate(parse.GetValue(model));
            if (jsonPath is not null && !jsonToOut)
                Files.RefuseInputAsOutput(jsonPath, "--json", path, "--model", "the measurements would replace the package");
            ModelPackage package = Files.LoadModel(path);
            // With the JSON on standard output the text lines go to standard error, so standard output is the JSON alone.
            JsonObject result = Measure(package, Path.GetFileName(path), n, !parse.GetValue(noPeer), jsonToOut ? context.Err : context.Out);
            string jsonText = result.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
            if (jsonToOut) context.Out.WriteLine(jsonText);
            else if (jsonPath is not null) Files.WriteAtomically(jsonPath, System.Text.Encoding.UTF8.GetBytes(jsonText + "\n"));
            return Cli.Ok;
        });
        return command;
    }

    private static string F(double v) => v.ToString("0.###", CultureInfo.InvariantCulture);

    /// <summary>The most timed images per measurement: 10 million latencies are 80 MB, and hours of timing.</summary>
    internal const int MaxRuns = 10_000_000;

    internal static JsonObject Measure(ModelPackage package, string modelName, int runs, bool peer, TextWriter log)
    {
        IntegerEngine engine;
        try { engine = IntegerEngine.Create(package); }
        catch (InvalidGraphException e) { throw new CommandFailedException($"the engine cannot run this model: {e.Message}"); }
        using var _ = engine;
        var input = SampleInput(package);

        // The kernels first: under an emulator or on a slow board the measurement below takes minutes.
        log.WriteLine($"kernels      {InstructionSets.Describe()}");
        // Warm-up (JIT tiers, caches), then allocation and latency on this thread.
        for (int i = 0; i < 50; i++) engine.Run(input);
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 20; i++) engine.Run(input);
        double allocPerImage = (GC.GetAllocatedBytesForCurrentThread() - before) / 20.0;
        var times = Time(() => engine.Run(input), runs);
        double p50 = Percentile(times, 0.50), p99 = Percentile(times, 0.99);
        double perSecond1 = 1000.0 / times.Average();
        double perSecondAll = Throughput(package, input, Environment.ProcessorCount);
        long macs = engine.Macs;
        var (roofline, roofNote) = Roofline(macs);
        log.WriteLine($"model        {modelName} ({package.Manifest.ModelId} {package.Manifest.Version})");
        log.WriteLine($"engine       {engine.Name}, {engine.ArenaBytes:N0} B arena, {macs:N0} MACs, {engine.Events:N0} events/image");
        log.WriteLine($"latency      p50 {F(p50)} ms, p99 {F(p99)} ms (1 thread, {runs} images)");
        log.WriteLine($"throughput   {F(perSecond1)} images/s on 1 thread, {F(perSecondAll)} images/s on {Environment.ProcessorCount} threads");
        log.WriteLine($"roofline     {F(roofline)} ms ({roofNote})");
        log.WriteLine($"allocation   {F(allocPerImage)} bytes/image");

        var result = new JsonObject
        {
            ["model"] = modelName,
            ["model_id"] = package.Manifest.ModelId,
            ["engine"] = engine.Name,
            ["kernels"] = InstructionSets.Describe(),
            ["p50_ms"] = Math.Round(p50, 4),
            ["p99_ms"] = Math.Round(p99, 4),
            ["images_per_s_1t"] = Math.Round(perSecond1, 1),
            ["images_per_s_all"] = Math.Round(perSecondAll, 1),
            ["threads_all"] = Environment.ProcessorCount,
            ["macs"] = macs,
            ["roofline_ms"] = Math.Round(roofline, 4),
            ["roofline_basis"] = roofNote,
            ["alloc_bytes_per_image"] = allocPerImage,
            ["events"] = engine.Events,
            ["arena_bytes"] = engine.ArenaBytes,
            ["runs"] = runs,
            ["machine"] = Machine(),
            ["date_utc"] = DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture),
        };
        var peers = new JsonObject();
        if (peer)
        {
            var (op50, op99, ops) = OnnxRuntimePeer(package, input, runs);
            log.WriteLine($"peer         onnxruntime {OrtVersion()} float32, 1 thread: p50 {F(op50)} ms, p99 {F(op99)} ms");
            peers["onnxruntime"] = new JsonObject
            {
                ["p50_ms"] = Math.Round(op50, 4),
                ["p99_ms"] = Math.Round(op99, 4),
                ["images_per_s_1t"] = Math.Round(ops, 1),
                ["version"] = OrtVersion(),
                ["precision"] = "float32 (qana export-onnx of the same graph)",
                ["threads"] = 1,
            };
        }
        result["peers"] = peers;
        return result;
    }

    /// <summary>A fixed pseudo-random image (the engine's work does not depend on content beyond event counts).</summary>
    private static sbyte[] SampleInput(ModelPackage package)
    {
        var spec = package.Graph.Tensors[package.Graph.InputTensor];
        if (package.Manifest.Golden.Length > 0 && package.Manifest.Golden[0].Input.Length == spec.Length)
            return package.Manifest.Golden[0].Input;
        var rng = new Random(1);
        var rgb = new byte[spec.Length];
        rng.NextBytes(rgb);
        var q = new sbyte[spec.Length];
        InputQuantizer.Quantize(rgb, q, spec.Scale, spec.ZeroPoint);
        return q;
    }

    private static double[] Time(Action run, int n)
    {
        var t = new double[n];
        for (int i = 0; i < n; i++)
        {
            long t0 = Stopwatch.GetTimestamp();
            run();
            t[i] = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
        }
        return t;
    }

    private static double Percentile(double[] values, double q)
    {
        var sorted = values.OrderBy(v => v).ToArray();
        return sorted[Math.Min(sorted.Length - 1, (int)Math.Ceiling(q * sorted.Length) - 1)];
    }

    /// <summary>One engine per thread, all cores, for two seconds after a warm-up.</summary>
    private static double Throughput(ModelPackage package, sbyte[] input, int threads)
    {
        var engines = Enumerable.Range(0, threads).Select(_ => IntegerEngine.Create(package)).ToArray();
        try
        {
            foreach (var e in engines) e.Run(input);
            long total = 0;
            var stop = Stopwatch.StartNew();
            var workers = engines.Select(e => new Thread(() =>
            {
                long done = 0;
                while (stop.ElapsedMilliseconds < 2000) { e.Run(input); done++; }
                Interlocked.Add(ref total, done);
            })).ToArray();
            foreach (var w in workers) w.Start();
            foreach (var w in workers) w.Join();
            return total / stop.Elapsed.TotalSeconds;
        }
        finally
        {
            foreach (var e in engines) e.Dispose();
        }
    }

    /// <summary>
    /// MACs ÷ this core's int8 MAC rate as .NET exposes it. With 512-bit vectors an int8 dot product is
    /// vpmaddubsw (64 u8×s8 products, pairwise summed to int16) then vpmaddwd (to int32): two multiply-pipe
    /// instructions per 64 MACs, and Zen 4 issues one 512-bit multiply per cycle, so 32 MACs per cycle.
    /// 256-bit vectors give 16, 128-bit 8. The clock is the highest frequency the kernel reports.
    /// </summary>
    private static (double Ms, string Basis) Roofline(long macs)
    {
        int bits = InstructionSets.Vector512 && InstructionSets.Avx512BW ? 512 : InstructionSets.Vector256 ? 256 : 128;   // the kernels' width, under the cap
        double macsPerCycle = bits / 8 / 2.0;
        double ghz = ClockGhz();
        double ms = macs / (macsPerCycle * ghz * 1e9) * 1000;
        return (ms, $"{macsPerCycle} int8 MACs/cycle ({bits}-bit maddubs then maddwd) x {ghz:0.###} GHz, 1 core");
    }

    private static double ClockGhz()
    {
        try
        {
            const string max = "/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq";
            if (File.Exists(max)) return double.Parse(File.ReadAllText(max).Trim(), CultureInfo.InvariantCulture) / 1e6;
            double best = 0;
            foreach (var line in File.ReadLines("/proc/cpuinfo"))
                if (line.StartsWith("cpu MHz", StringComparison.Ordinal))
                    best = Math.Max(best, double.Parse(line[(line.IndexOf(':') + 1)..].Trim(), CultureInfo.InvariantCulture));
            if (best > 0) return best / 1000;
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        catch (FormatException) { }
        return 3.0;   // nothing readable: a typical clock, flagged in the basis text
    }

    private static string Machine()
    {
        string cpu = "unknown cpu";
        try
        {
            var line = File.Exists("/proc/cpuinfo") ? File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal)) : null;
            if (line is not null) cpu = line[(line.IndexOf(':') + 1)..].Trim();
        }
        catch (IOException) { }
        return $"{cpu}, {Environment.ProcessorCount} cores, {System.Runtime.InteropServices.RuntimeInformation.OSArchitecture}, .NET {Environment.Version}";
    }

    private static string OrtVersion() => typeof(InferenceSession).Assembly.GetName().Version?.ToString(3) ?? "?";

    /// <summary>ONNX Runtime, one intra-op and one inter-op thread, on the float32 export; input NCHW in [0,1].</summary>
    private static (double P50, double P99, double PerSecond) OnnxRuntimePeer(ModelPackage package, sbyte[] quantized, int runs)
    {
        byte[] onnx;
        try { onnx = OnnxExporter.ToBytes(package); }
        catch (Exception e) when (e is NotSupportedException or InvalidOperationException or PackageFormatException)
        { throw new CommandFailedException($"cannot export the model for the ONNX Runtime peer: {e.Message} (use --no-peer)"); }
        var spec = package.Graph.Tensors[package.Graph.InputTensor];
        int h = spec.Height, w = spec.Width, c = spec.Channels;
        var data = new float[c * h * w];
        for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
        for (int ch = 0; ch < c; ch++)
            data[(ch * h + y) * w + x] = (float)(spec.Scale * (quantized[(y * w + x) * c + ch] - spec.ZeroPoint));
        using var options = new SessionOptions { IntraOpNumThreads = 1, InterOpNumThreads = 1, ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
        using var session = new InferenceSession(onnx, options);
        string inputName = session.InputMetadata.Keys.First();
        var tensor = new DenseTensor<float>(data, [1, c, h, w]);
        var feeds = new[] { NamedOnnxValue.CreateFromTensor(inputName, tensor) };
        void Run() { using var results = session.Run(feeds); }
        for (int i = 0; i < 50; i++) Run();
        var t = Time(Run, runs);
        return (Percentile(t, 0.5), Percentile(t, 0.99), 1000.0 / t.Average());
    }
}
