using System.Xml.Linq;
using QanaEdge.Model;
using QanaEdge.Model.Packaging;
using QanaEdge.Training.Conversion;
using QanaEdge.Training.Data;
using QanaEdge.Training.Engine;
using QanaEdge.Training.Evaluation;
using QanaEdge.Training.Incremental;
using QanaEdge.Training.Network;
using QanaEdge.Training.Pipeline;
using QanaEdge.Training.Quantization;
using QanaEdge.Training.Tests.Data;

namespace QanaEdge.Training.Tests.Pipeline;

/// <summary>
/// The stages after the float phase on a tiny network and real HAM10000 JPEGs: embedding-space SMOTE (head,
/// then top fine-tune), the readout learner and its golden-set gate, the tiling τ through the device's path,
/// the calibration figures, and the whole pipeline with both switches.
/// </summary>
public class PostFloatStageTests
{
    private const int Size = 16;
    private static readonly QanaOptions Tiny = new() { InputSize = Size, StemChannels = 8, Blocks = [(16, 1), (24, 2)], DropoutRate = 0 };

    /// <summary>Images per class in the order akiec, bcc, bkl, df, mel, nv, vasc: imbalanced like HAM10000, so SMOTE has work.</summary>
    private static readonly int[] TrainCounts = [12, 12, 16, 10, 24, 48, 10];

    private static readonly Lazy<IReadOnlyList<Ham10000Row>> AllRows = new(() => Ham10000Index.Load(Ham10000Location.Images, Ham10000Location.Labels));

    /// <summary>The first images of each class by id: <paramref name="counts"/>[c] of class c after skipping <paramref name="skip"/>.</summary>
    private static List<Ham10000Row> Rows(int[] counts, int skip = 0) =>
        AllRows.Value.GroupBy(r => r.ClassIndex).OrderBy(g => g.Key)
            .SelectMany(g => g.OrderBy(r => r.ImageId, StringComparer.Ordinal).Skip(skip).Take(counts[g.Key])).ToList();

    private static readonly Lazy<(ImageSet Train, ImageSet Val)> Sets = new(() =>
        (ImageSet.Load(Rows(TrainCounts), Size), ImageSet.Load(Rows(Enumerable.Repeat(4, 7).ToArray(), skip: 48), Size)));

    private static TrainOptions Options(ulong seed = 3) => new()
    {
        Network = Tiny, BatchSize = 16, Epochs = 2, QatEpochs = 1, Seed = seed, ZoomProbability = 0,
        SmoteHeadEpochs = 3, SmoteFinetuneEpochs = 1,
    };

    /// <summary>A tiny float network after two epochs on the real images, and its trainer.</summary>
    private static (QanaNet Net, Trainer Trainer) TrainedFloat(TrainOptions o)
    {
        var (train, val) = Sets.Value;
        var net = new QanaNet(o.Network, o.Seed);
        var trainer = new Trainer(o);
        trainer.Fit("float", net, train, val, o.Epochs, 3e-3f, () => NetState.Capture(net), s => ((NetState)s).Restore(net), 5, 0);
        return (net, trainer);
    }

    /// <summary>Copies of every parameter and batch-norm statistic, per layer.</summary>
    private static Dictionary<string, float[]> Arrays(IEnumerable<Layer> layers)
    {
        var d = new Dictionary<string, float[]>();
        foreach (var layer in layers)
        {
            foreach (var p in layer.Parameters) d[p.Name] = (float[])p.Value.Clone();
            if (layer is BatchNorm bn) { d[bn.Name + ".mean"] = (float[])bn.RunningMean.Clone(); d[bn.Name + ".var"] = (float[])bn.RunningVar.Clone(); }
        }
        return d;
    }

    private static IEnumerable<Layer> Trunk(QanaNet net) =>
        new Layer[] { net.Stem, net.StemBn }.Concat(net.Blocks[..^1].SelectMany(b => b.Layers));

    [Fact]
    public void SmoteHeadStageChangesOnlyTheHead()
    {
        var o = Options() with { SmoteFinetuneEpochs = 0 };
        var (net, trainer) = TrainedFloat(o);
        var (train, val) = Sets.Value;
        var others = net.Layers.Where(l => l != net.Head).ToArray();
        var before = Arrays(others);
        var headBefore = Arrays([net.Head]);

        var report = SmoteStage.Run(net, train, val, o, trainer);

        var after = Arrays(others);
        Assert.All(before, kv => Assert.Equal(kv.Value, after[kv.Key]));
        Assert.NotEqual(headBefore["head.w"], net.Head.Weight.Value);
        // nv, the largest class, gets nothing; every other class is brought up to half of it.
        int nv = Classes.Codes.ToList().IndexOf("nv");
        Assert.Equal(0, report.SyntheticCounts[nv]);
        for (int c = 0; c < Classes.Count; c++)
            if (c != nv) Assert.Equal(Math.Max(0, TrainCounts[nv] / 2 - TrainCounts[c]), report.SyntheticCounts[c]);
        Assert.InRange(report.ValMacroF1Head, 0, 1);
    }

    [Fact]
    public void SmoteFinetuneMovesTheTopAndLeavesTheTrunkFrozen()
    {
        var o = Options();
        var (net, trainer) = TrainedFloat(o);
        var (train, val) = Sets.Value;
        SmoteStage.TrainHead(net.Head, SmoteStage.Embeddings(net, train, 16), train.Labels, SmoteStage.Embeddings(net, val, 16), val.Labels, o, 1);
        var trunk = Arrays(Trunk(net));
        var lastBlock = Arrays(net.Blocks[^1].Layers);

        // The fine-tune as the SMOTE stage runs it, without the comparison with the state it started from.
        trainer.Fit("smote-finetune", new SmoteStage.TopFinetune(net), train, val, 1, o.SmoteFinetuneLearningRate,
            () => NetState.Capture(net), s => ((NetState)s).Restore(net), 1, 0);

        var after = Arrays(Trunk(net));
        Assert.All(trunk, kv => Assert.Equal(kv.Value, after[kv.Key]));
        var lastAfter = Arrays(net.Blocks[^1].Layers);
        Assert.Contains(lastBlock, kv => !kv.Value.SequenceEqual(lastAfter[kv.Key]));
        // The trainable part the fine-tune sees is exactly everything after the trunk.
        var top = new SmoteStage.TopFinetune(net);
        Assert.Equal(net.Parameters.Count() - Trunk(net).SelectMany(l => l.Parameters).Count(), top.Parameters.Count());
    }

    [Fact]
    public void SmoteStageIsDeterministicForASeed()
    {
        var o = Options();
        var (net, trainer) = TrainedFloat(o);
        var (train, val) = Sets.Value;
        var start = NetState.Capture(net);
        SmoteStage.Run(net, train, val, o, trainer);
        var first = Arrays(net.Layers);

        start.Restore(net);
        SmoteStage.Run(net, train, val, o, new Trainer(o));
        var second = Arrays(net.Layers);
        Assert.All(first, kv => Assert.Equal(kv.Value, second[kv.Key]));

        start.Restore(net);
        var other = o with { Seed = 4 };
        SmoteStage.Run(net, train, val, other, new Trainer(other));
        Assert.NotEqual(first["head.w"], net.Head.Weight.Value);
    }

    /// <summary>A converted tiny model (paper8) with the converter's common readout threshold.</summary>
    private static ModelPackage Package()
    {
        var o = Options();
        var (net, trainer) = TrainedFloat(o);
        var q = QuantNetBuilder.FromFloat(net, new QuantScheme(QuantizationProfile.Paper8));
        TrainingPipeline.Calibrate(q, Sets.Value.Train, trainer, 128);
        return Converter.Convert(q, new ConversionInfo { ModelId = "tiny" });
    }

    private static readonly Lazy<ModelPackage> TinyPackage = new(Package);

    [Fact]
    public void ReadoutLearnerWithoutStepsGivesBackTheModelsHead()
    {
        var model = TinyPackage.Value;
        var learner = new ReadoutLearner(model, new ReadoutLearnerOptions { Epochs = 0 });
        var update = learner.CreateUpdate("1.0.1");
        var head = ReadoutUpdates.Head(model);
        var newHead = update.Graph.Nodes.Single(n => n.Kind == Model.Graph.OpKind.Dense);
        Assert.Equal(head.Weights, newHead.Weights);
        Assert.Equal(head.Bias, newHead.Bias);
        for (int k = 0; k < head.WeightScales!.Length; k++) Assert.Equal(head.WeightScales[k], newHead.WeightScales![k], 9);
    }

    [Fact]
    public void ReadoutLearnerFitsItsCasesDeterministicallyAndTheUpdateApplies()
    {
        var model = TinyPackage.Value;
        var train = Sets.Value.Train;
        var features = IncrementalStage.HeadInputs(model, train);
        var options = new ReadoutLearnerOptions { Epochs = 15, LearningRate = 1e-3f, Anchor = 0, Seed = 5 };
        var learner = new ReadoutLearner(model, options);
        var losses = learner.Learn(features, train.Labels);
        Assert.True(losses[^1] < losses[0], string.Join(", ", losses));
        var update = learner.CreateUpdate("1.0.1");
        var applied = ReadoutUpdates.Apply(model, update);
        Assert.Equal("1.0.1", applied.Manifest.Version);

        // The update carries golden vectors a device can check it by: learned head inputs, with the logits the
        // update's own graph gives them (here on the optimized kernels, as a device would run them).
        Assert.Equal(ReadoutLearner.GoldenCount, update.Manifest.Golden.Length);
        Assert.Equal(features[0], update.Manifest.Golden[0].Input);
        using (var engine = QanaEdge.Runtime.IntegerEngine.Create(update))
            foreach (var g in update.Manifest.Golden)
            {
                engine.Run(g.Input);
                Assert.Equal(g.ExpectedLogits, engine.Logits.ToArray());
            }

        // The backbone is untouched: every node but the head is the model's own.
        var head = ReadoutUpdates.Head(model);
        for (int i = 0; i < model.Graph.Nodes.Length; i++)
            if (model.Graph.Nodes[i] != head && model.Graph.Nodes[i].Kind != Model.Graph.OpKind.SpikingReadout)
                Assert.Same(model.Graph.Nodes[i], applied.Graph.Nodes[i]);

        // The integer engine with the learned readout fits the cases better than the model did.
        double before = ClassificationMetrics.Compute(train.Labels, TrainingPipeline.RunInteger(model, train).Probabilities).Top1;
        double after = ClassificationMetrics.Compute(train.Labels, TrainingPipeline.RunInteger(applied, train).Probabilities).Top1;
        Assert.True(after > before, $"top-1 on the cases {before:P1} -> {after:P1}");

        var again = new ReadoutLearner(model, options);
        again.Learn(features, train.Labels);
        Assert.Equal(update.Graph.Nodes[0].Weights, again.CreateUpdate("1.0.1").Graph.Nodes[0].Weights);
    }

    /// <summary>
    /// A learning rate far too large makes the head's weights overflow within the first pass. The learner's loss reads the
    /// logits through the int8 clamp, so it stayed finite and the learner ran on, quantizing NaN weights into an update
    /// that only the golden-set check refused; now it stops at that batch, naming the pass, the batch and the setting to
    /// lower, and no update can be made from the lost head.
    /// </summary>
    [Fact]
    public void ReadoutLearnerStopsAtTheBatchWhereALearningRateFarTooLargeMakesItDiverge()
    {
        var model = TinyPackage.Value;
        var train = Sets.Value.Train;
        var features = IncrementalStage.HeadInputs(model, train);
        var learner = new ReadoutLearner(model, new ReadoutLearnerOptions { LearningRate = 1e30f });

        var e = Assert.Throws<TrainingDivergedException>(() => learner.Learn(features, train.Labels));
        Assert.Equal((ReadoutLearner.Phase, 1), (e.Phase, e.Epoch));
        Assert.InRange(e.Batch, 2, (train.Count + 31) / 32); // the first batch is learned from the model's own, finite head
        Assert.Matches(@"^training diverged in the readout phase at pass 1, batch \d+ \(weights no longer finite\): " +
            @"a smaller learning rate may avoid it \(qana train --incremental-learning-rate; on the device Qana:Learning:LearningRate\)$", e.Message);
        Assert.Throws<InvalidOperationException>(() => learner.CreateUpdate("1.0.1"));
    }

    [Fact]
    public void IncrementalStageRefusesAnUpdateThatLosesAccuracyOnTheGoldenSet()
    {
        var model = TinyPackage.Value;
        var train = Sets.Value.Train;
        // Cases labelled wrongly (every label moved to the next class) teach a readout that the golden set refuses.
        var wrong = new ImageSet(train.Size, train.Pixels, train.Labels.Select(l => (l + 1) % Classes.Count).ToArray(), train.Ids);
        var o = Options() with { IncrementalEpochs = 20, IncrementalLearningRate = 3e-3f };
        var (kept, report) = IncrementalStage.Run(model, wrong, train, o);
        Assert.False(report.Accepted);
        Assert.Same(model, kept);
        Assert.True(report.GoldenTop1After < report.GoldenTop1Before || report.GoldenMacroF1After < report.GoldenMacroF1Before);

        // Learning the golden set's own cases correctly does not lose accuracy on it, and is kept.
        var (learned, good) = IncrementalStage.Run(model, train, train, o);
        Assert.True(good.Accepted, $"top-1 {good.GoldenTop1Before:P1} -> {good.GoldenTop1After:P1}, F1 {good.GoldenMacroF1Before:F3} -> {good.GoldenMacroF1After:F3}");
        Assert.NotSame(model, learned);
        Assert.Equal("1.0.1", learned.Manifest.Version);
    }

    [Fact]
    public void ValidationIsHalvedByLesionAndStratifiedByClass()
    {
        var rows = Rows(Enumerable.Repeat(20, 7).ToArray());
        var labels = rows.Select(r => r.ClassIndex).ToArray();
        var lesions = rows.Select(r => r.LesionId!).ToArray();
        var (stream, golden) = IncrementalStage.SplitByLesion(labels, lesions, 1);
        Assert.Empty(stream.Intersect(golden));
        Assert.Equal(rows.Count, stream.Length + golden.Length);
        Assert.Empty(stream.Select(i => lesions[i]).Intersect(golden.Select(i => lesions[i])));
        for (int c = 0; c < Classes.Count; c++)
        {
            int s = stream.Count(i => labels[i] == c), g = golden.Count(i => labels[i] == c);
            Assert.True(s > 0 && g > 0, $"class {c}: {s} / {g}");
        }
        Assert.Equal(stream, IncrementalStage.SplitByLesion(labels, lesions, 1).Stream);
    }

    /// <summary>A lesion whose images carry different diagnoses (the split allows it: the lesion counts as its most frequent
    /// dx) still lands whole in one half, as every other lesion.</summary>
    [Fact]
    public void ALesionWithImagesOfTwoClassesStaysInOneHalf()
    {
        var labels = new List<int>();
        var lesions = new List<string>();
        for (int l = 0; l < 12; l++)
        {
            // Every lesion: two nv images and one mel image.
            foreach (int c in new[] { 5, 5, 4 }) { labels.Add(c); lesions.Add($"HAM_{l:D2}"); }
        }
        var (stream, golden) = IncrementalStage.SplitByLesion(labels, lesions, 1);
        Assert.Equal(labels.Count, stream.Length + golden.Length);
        Assert.Empty(stream.Select(i => lesions[i]).Intersect(golden.Select(i => lesions[i])));
        Assert.Equal(6, stream.Select(i => lesions[i]).Distinct().Count());
    }

    /// <summary>
    /// The whole recipe with --smote and --incremental on a tiny network and 30 real images per class:
    /// the stages are logged, τ is stored and reported, the figures are written, and the device's own
    /// classifier with the stored τ makes exactly the decisions the τ fit simulated.
    /// </summary>
    [Fact]
    public void PipelineWithSmoteAndIncrementalStoresTauAndWritesFigures()
    {
        var dir = Directory.CreateTempSubdirectory("qana-pipeline-");
        try
        {
            var rows = Rows(Enumerable.Repeat(30, 7).ToArray());
            var csv = Path.Combine(dir.FullName, "labels.csv");
            File.WriteAllLines(csv, rows.Select(r => $"{r.ImageId},{r.LesionId},{r.Dx}").Prepend("image_id,lesion_id,dx"));
            var o = Options() with { Epochs = 1, Smote = true, Incremental = true, SmoteHeadEpochs = 2, IncrementalEpochs = 3 };
            var paths = new PipelinePaths { ImagesDir = Ham10000Location.Images, LabelsCsv = csv, OutPackage = Path.Combine(dir.FullName, "tiny.qana") };
            var result = new TrainingPipeline(o, paths).Run();

            var package = PackageReader.Load(File.ReadAllBytes(paths.OutPackage));
            var c = package.Manifest.Calibration;
            Assert.Equal(result.Tiling!.Tau, c.TilingTau);
            Assert.InRange(c.TilingTau, 0, 1);
            Assert.Equal(c.TilingTau, package.Manifest.Metrics["tiling_tau"]);
            Assert.Equal(result.TestTilingTriggerRate, package.Manifest.Metrics["test_tiling_trigger_rate"]);
            // The test figures come with their 95 % intervals (bootstrap over lesions), which hold them.
            foreach (string figure in new[] { "test_top1", "test_macro_f1", "test_balanced_accuracy" })
                Assert.InRange(package.Manifest.Metrics[figure], package.Manifest.Metrics[figure + "_ci95_low"], package.Manifest.Metrics[figure + "_ci95_high"]);
            Assert.True(package.Manifest.Metrics["test_top1_ci95_high"] > package.Manifest.Metrics["test_top1_ci95_low"]);
            Assert.Equal(Classes.Count, c.Thresholds.Length);
            Assert.NotNull(result.Smote);
            Assert.NotNull(result.Incremental);

            var phases = File.ReadAllLines(paths.LogPath).Select(l => System.Text.Json.JsonDocument.Parse(l).RootElement.GetProperty("phase").GetString()).ToList();
            Assert.Equal(2, phases.Count(p => p == "smote-head"));
            Assert.Equal(1, phases.Count(p => p == "smote-finetune"));
            Assert.Contains("tiling τ", File.ReadAllText(paths.ReportMarkdownPath), StringComparison.Ordinal);

            var figures = Directory.GetFiles(paths.FiguresDir, "*.svg").Select(f => Path.GetFileName(f)).Order(StringComparer.Ordinal).ToArray();
            Assert.Equal(new[] { "readout-thresholds.svg", "referral.svg", "tiling-tau.svg" }, figures);
            foreach (var f in figures) Assert.Equal("svg", XDocument.Load(Path.Combine(paths.FiguresDir, f)).Root!.Name.LocalName);

            // What the τ fit simulated ("tiled when the single view's top probability is under τ") is what the device does.
            var valPaths = LesionSplit.Create(Ham10000Index.Load(Ham10000Location.Images, csv)).Validation.Select(r => r.ImagePath).ToArray();
            var (plainReports, tiledReports) = DevicePredictions.PlainAndTiled(package, valPaths);
            var (plain, tiled) = (plainReports.Probabilities, tiledReports.Probabilities);

            // The package carries the gray-world gains fitted on the training split, and the device, applying them to
            // the image files, computes exactly what training computed from its preprocessed validation images.
            var data = PreparedData.Load(Ham10000Location.Images, csv, Size);
            Assert.Equal(data.ColorGains, package.Manifest.Input.ColorGains);
            Assert.NotEqual([1f, 1f, 1f], package.Manifest.Input.ColorGains);
            var (_, trainingView, trainingDecisions) = TrainingPipeline.RunInteger(package, data.Validation);
            Assert.Equal(trainingView, plain);
            Assert.Equal(trainingDecisions, plainReports.Predictions);
            var (device, wasTiled) = DevicePredictions.Classify(package, valPaths);
            for (int i = 0; i < valPaths.Length; i++)
            {
                bool expectTiled = plain[i].Max() < c.TilingTau;
                Assert.Equal(expectTiled, wasTiled[i]);
                Assert.Equal(expectTiled ? tiled[i] : plain[i], device.Probabilities[i]);
                Assert.Equal(expectTiled ? tiledReports.Predictions[i] : plainReports.Predictions[i], device.Predictions[i]);
            }
        }
        finally { dir.Delete(recursive: true); }
    }

    [Fact]
    public void TilingCurveCoversEveryCandidateAndStaysAProbability()
    {
        var rng = new SeededRandom(2);
        var truth = Enumerable.Range(0, 60).Select(i => i % 3).ToArray();
        float[] Row() { var p = new float[3]; double s = 0; for (int k = 0; k < 3; k++) { p[k] = (float)rng.NextDouble(); s += p[k]; } for (int k = 0; k < 3; k++) p[k] = (float)(p[k] / s); return p; }
        var plain = truth.Select(_ => Row()).ToArray();
        var tiled = truth.Select(_ => Row()).ToArray();
        plain[0] = [1f, 0f, 0f]; // a saturated readout: no τ ≤ 1 tiles it
        var fit = QanaEdge.Training.Calibration.TilingCalibration.Fit(truth, plain, tiled, 0.25);
        Assert.Equal(plain.Select(p => p.Max()).Distinct().Count(t => t < 1) + 1, fit.Curve.Count);
        Assert.All(fit.Curve, p => Assert.InRange(p.Tau, 0, 1));
        Assert.Contains(fit.Curve, p => p.TriggerRate > 0.25);
        Assert.Equal(fit.Curve.Where(p => p.TriggerRate <= 0.25).Max(p => p.MacroF1), fit.MacroF1WithTiling, 12);
        Assert.Contains("τ", CalibrationFigures.TilingSvg(fit, 0.25, "test"), StringComparison.Ordinal);
    }
}
