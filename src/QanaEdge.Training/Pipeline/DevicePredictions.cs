using QanaEdge.Imaging;
using QanaEdge.Model.Packaging;
using QanaEdge.Training.Data;
using QanaEdge.Training.Engine;

namespace QanaEdge.Training.Pipeline;

/// <summary>
/// Predictions through the device's own path (<see cref="LesionClassifier"/>: decode, crop as the package
/// says, resample, gains, integer engine, spiking readout, tiling fallback) from the image files, so what is
/// calibrated and reported is what a board computes.
/// </summary>
public static class DevicePredictions
{
    /// <summary>What the device reports for each image: its probabilities and the class it names (its own tie rule,
    /// which the first maximum of the probabilities does not always follow).</summary>
    public sealed record Reports(float[][] Probabilities, int[] Predictions)
    {
        public Reports(int count) : this(new float[count][], new int[count]) { }

        public void Set(int i, LesionResult r)
        {
            Probabilities[i] = r.Probabilities;
            int k = 0;
            while (r.Classes[k] != r.Label) k++;
            Predictions[i] = k;
        }
    }

    /// <summary>Per image: the single view's report, and that of the view averaged with its four tiles
    /// (the tiling fallback forced on), from one decode.</summary>
    public static (Reports Plain, Reports Tiled) PlainAndTiled(ModelPackage package, IReadOnlyList<string> paths)
    {
        var always = WithCalibration(package, c => c.TilingTau = 1.0);
        var plain = new Reports(paths.Count);
        var tiled = new Reports(paths.Count);
        Run(paths.Count, () =>
        {
            var a = new LesionClassifier(package, LesionClassifier.CreateEngine(package), new ClassifierOptions { Tiling = false });
            var b = new LesionClassifier(always, LesionClassifier.CreateEngine(always), new ClassifierOptions { Tiling = true });
            return i =>
            {
                var image = ImageFiles.Decode(paths[i]);
                plain.Set(i, a.Classify(image));
                tiled.Set(i, b.Classify(image));
            };
        });
        return (plain, tiled);
    }

    /// <summary>Per image: what the device reports with the package's calibration, and whether it tiled.</summary>
    public static (Reports Reports, bool[] Tiled) Classify(ModelPackage package, IReadOnlyList<string> paths)
    {
        var reports = new Reports(paths.Count);
        var tiled = new bool[paths.Count];
        Run(paths.Count, () =>
        {
            var c = new LesionClassifier(package, LesionClassifier.CreateEngine(package));
            return i =>
            {
                var r = c.Classify(ImageFiles.Decode(paths[i]));
                reports.Set(i, r);
                tiled[i] = r.Tiled;
            };
        });
        return (reports, tiled);
    }

    /// <summary>Round-robin over a few workers, each with its own classifiers (they are not thread-safe). Files that
    /// cannot be decoded are collected into one <see cref="DatasetException"/> at the end.</summary>
    private static void Run(int count, Func<Action<int>> worker)
    {
        int workers = Math.Max(1, Math.Min(Par.Threads, 4));
        var failures = new ImageFiles.Failures(count, "images");
        Parallel.For(0, workers, new ParallelOptions { MaxDegreeOfParallelism = workers }, w =>
        {
            var body = worker();
            for (int i = w; i < count; i += workers)
            {
                try { body(i); }
                catch (DatasetException e) { failures.Add(i, e.Message); }
            }
        });
        failures.ThrowIfAny();
    }

    /// <summary>Mutable copy of a calibration, for <see cref="WithCalibration"/>.</summary>
    public sealed class CalibrationDraft
    {
        public int ReadoutWindow { get; set; }
        public int[] Thresholds { get; set; } = [];
        public double Beta { get; set; }
        public double[] StepWeights { get; set; } = [];
        public double TilingTau { get; set; }
        public double ReferralThreshold { get; set; }
        public double SaliencyFlatCv { get; set; }
    }

    /// <summary>The package with its manifest's calibration edited (graph, metrics and everything else kept).</summary>
    public static ModelPackage WithCalibration(ModelPackage p, Action<CalibrationDraft> edit)
    {
        var m = p.Manifest;
        var c = m.Calibration;
        var d = new CalibrationDraft
        {
            ReadoutWindow = c.ReadoutWindow, Thresholds = c.Thresholds, Beta = c.Beta, StepWeights = c.StepWeights,
            TilingTau = c.TilingTau, ReferralThreshold = c.ReferralThreshold, SaliencyFlatCv = c.SaliencyFlatCv,
        };
        edit(d);
        var manifest = new ModelManifest
        {
            ModelId = m.ModelId, Version = m.Version, Kind = m.Kind, BaseModelId = m.BaseModelId, BaseModelVersion = m.BaseModelVersion,
            CreatedUtc = m.CreatedUtc, Classes = m.Classes, Input = m.Input, Profile = m.Profile, Layers = m.Layers,
            ConversionSuccessRate = m.ConversionSuccessRate, Metrics = m.Metrics, Golden = m.Golden, Provenance = m.Provenance,
            Calibration = new Model.Packaging.Calibration
            {
                ReadoutWindow = d.ReadoutWindow, Thresholds = d.Thresholds, Beta = d.Beta, StepWeights = d.StepWeights,
                TilingTau = d.TilingTau, ReferralThreshold = d.ReferralThreshold, SaliencyFlatCv = d.SaliencyFlatCv,
            },
        };
        var result = new ModelPackage { Manifest = manifest, Graph = p.Graph };
        PackageValidator.Validate(result);
        return result;
    }
}
