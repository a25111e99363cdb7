using System.Diagnostics;
using QanaEdge.Imaging;
using QanaEdge.Model.Packaging;
using QanaEdge.Runtime;
using QanaEdge.Runtime.Kernels;
using QanaEdge.TestSupport;

/// <summary>
/// The classifier's paths timed on real images (decoding excluded): the single centred view, the tiling fallback
/// (τ above 1, so it fires on every image) and the saliency crop with tiling. Stopwatch passes, like <c>--quick</c>.
/// </summary>
internal static class ClassifyBench
{
    private const int Images = 20, Passes = 15;

    public static void Run(ModelPackage package)
    {
        RgbImage[] images = Directory.GetFiles(TestData.Ham10000Images, "*.jpg").Order(StringComparer.Ordinal)
            .Take(Images).Select(f => ImageDecoder.Decode(File.ReadAllBytes(f))).ToArray();
        ModelPackage sure = WithTau(package, 0), unsure = WithTau(package, 1.01);
        Console.WriteLine($"kernels {InstructionSets.Describe()}, {Images} HAM10000 images, {Passes} passes");
        Measure("single view", sure, new ClassifierOptions { Saliency = false }, images);
        Measure("tiled", unsure, new ClassifierOptions { Saliency = false }, images);
        Measure("saliency crop", sure, new ClassifierOptions { Saliency = true }, images);
        Measure("saliency + tiled", unsure, new ClassifierOptions { Saliency = true }, images);
    }

    private static void Measure(string name, ModelPackage package, ClassifierOptions options, RgbImage[] images)
    {
        using IntegerEngine engine = LesionClassifier.CreateEngine(package);
        var classifier = new LesionClassifier(package, engine, options);
        foreach (RgbImage image in images) classifier.Classify(image);
        var times = new double[Passes * images.Length];
        int runs = 0, i = 0;
        long allocated = 0;
        for (int pass = 0; pass < Passes; pass++)
            foreach (RgbImage image in images)
            {
                long bytes = GC.GetAllocatedBytesForCurrentThread(), t0 = Stopwatch.GetTimestamp();
                LesionResult r = classifier.Classify(image);
                times[i++] = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
                allocated += GC.GetAllocatedBytesForCurrentThread() - bytes;
                runs += r.Runs;
            }
        Array.Sort(times);
        Console.WriteLine($"{name,-18} p50 {times[times.Length / 2]:F3} ms, min {times[0]:F3} ms, {(double)runs / times.Length:F2} runs/result, {(double)allocated / times.Length:F0} B/result");
    }

    private static ModelPackage WithTau(ModelPackage p, double tau)
    {
        ModelManifest m = p.Manifest;
        Calibration c = m.Calibration;
        return new ModelPackage
        {
            Graph = p.Graph,
            Manifest = new ModelManifest
            {
                ModelId = m.ModelId, Version = m.Version, CreatedUtc = m.CreatedUtc, Classes = m.Classes, Input = m.Input,
                Profile = m.Profile, Layers = m.Layers, ConversionSuccessRate = m.ConversionSuccessRate, Metrics = m.Metrics,
                Golden = m.Golden, Provenance = m.Provenance,
                Calibration = new Calibration
                {
                    ReadoutWindow = c.ReadoutWindow, Thresholds = c.Thresholds, Beta = c.Beta, StepWeights = c.StepWeights,
                    TilingTau = tau, ReferralThreshold = c.ReferralThreshold, SaliencyFlatCv = c.SaliencyFlatCv,
                },
            },
        };
    }
}
