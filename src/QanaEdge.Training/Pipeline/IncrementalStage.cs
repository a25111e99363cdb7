using QanaEdge.Imaging;
using QanaEdge.Model.Packaging;
using QanaEdge.Runtime;
using QanaEdge.Training.Data;
using QanaEdge.Training.Engine;
using QanaEdge.Training.Evaluation;
using QanaEdge.Training.Incremental;

namespace QanaEdge.Training.Pipeline;

/// <summary>What the readout learner did and whether its update was kept.</summary>
public sealed record IncrementalReport(bool Accepted, int StreamCount, int GoldenCount, double[] EpochLosses,
    double GoldenTop1Before, double GoldenTop1After, double GoldenMacroF1Before, double GoldenMacroF1After,
    double StreamTop1Before, double StreamTop1After);

/// <summary>
/// The training-time equivalent of the device's incremental learning (DESIGN.md: only the readout changes,
/// from labelled cases, and a change is kept only if it loses no accuracy on a golden set). The validation
/// split is cut by lesion, stratified by class, into a labelled stream (half) and a golden set (the other
/// half), so no lesion is in both. The converted, calibrated model computes the int8 head inputs of the
/// stream; <see cref="ReadoutLearner"/> learns a readout update from them; the update is applied with
/// <see cref="ReadoutUpdates.Apply"/> and both models are run by the integer engine on the golden set.
/// The update is kept only when neither top-1 accuracy nor macro-F1 on the golden set drops.
/// </summary>
public static class IncrementalStage
{
    public static (ModelPackage Package, IncrementalReport Report) Run(ModelPackage model, ImageSet val, IReadOnlyList<string> lesionIds,
        TrainOptions o, Action<string>? say = null)
    {
        var (streamIdx, goldenIdx) = SplitByLesion(val.Labels, lesionIds, o.Seed);
        return Run(model, Subset(val, streamIdx), Subset(val, goldenIdx), o, say);
    }

    /// <summary>Learns from <paramref name="stream"/>; keeps the update only if <paramref name="golden"/> loses neither top-1 nor macro-F1.</summary>
    public static (ModelPackage Package, IncrementalReport Report) Run(ModelPackage model, ImageSet stream, ImageSet golden,
        TrainOptions o, Action<string>? say = null)
    {
        var features = HeadInputs(model, stream);

        var learner = new ReadoutLearner(model, new ReadoutLearnerOptions
        {
            Epochs = o.IncrementalEpochs, LearningRate = o.IncrementalLearningRate, Seed = o.Seed,
        });
        var losses = learner.Learn(features, stream.Labels);
        var update = learner.CreateUpdate(NextVersion(model.Manifest.Version));
        var candidate = ReadoutUpdates.Apply(model, update);

        var before = Metrics(model, golden);
        var after = Metrics(candidate, golden);
        var streamBefore = Metrics(model, stream);
        var streamAfter = Metrics(candidate, stream);
        bool accepted = after.Top1 >= before.Top1 && after.MacroF1 >= before.MacroF1;
        say?.Invoke($"incremental: readout learned from {stream.Count} validation cases (loss {losses[0]:F4} -> {losses[^1]:F4}, stream top-1 {streamBefore.Top1:P1} -> {streamAfter.Top1:P1}); " +
                    $"golden set of {golden.Count}: top-1 {before.Top1:P1} -> {after.Top1:P1}, macro-F1 {before.MacroF1:F3} -> {after.MacroF1:F3}: {(accepted ? "kept" : "refused")}");
        var report = new IncrementalReport(accepted, stream.Count, golden.Count, losses, before.Top1, after.Top1, before.MacroF1, after.MacroF1,
            streamBefore.Top1, streamAfter.Top1);
        return (accepted ? candidate : model, report);
    }

    private static ClassificationMetrics Metrics(ModelPackage package, ImageSet set)
    {
        var (_, probabilities, predictions) = TrainingPipeline.RunInteger(package, set);
        return ClassificationMetrics.Compute(set.Labels, probabilities, predictions);
    }

    /// <summary>1.0.0 → 1.0.1: a readout update is a patch of the model it applies to.</summary>
    public static string NextVersion(string version)
    {
        var parts = version.Split('.');
        return int.TryParse(parts[^1], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int last)
            ? string.Join('.', parts[..^1].Append((last + 1).ToString(System.Globalization.CultureInfo.InvariantCulture)))
            : version + ".1";
    }

    /// <summary>
    /// Halves by lesion, stratified by class: within each class the lesions (sorted by id, then shuffled with
    /// the seed) alternate between stream and golden set, so both halves hold every class that has two lesions.
    /// A lesion's class is its images' most frequent label (the smaller class index on a tie), as in
    /// <see cref="LesionSplit"/>: grouping images by their own label would send the images of a lesion with two
    /// diagnoses to both halves.
    /// </summary>
    public static (int[] Stream, int[] Golden) SplitByLesion(IReadOnlyList<int> labels, IReadOnlyList<string> lesionIds, ulong seed)
    {
        if (labels.Count != lesionIds.Count) throw new ArgumentException("one lesion id per image");
        var stream = new List<int>(); var golden = new List<int>();
        var byLesion = Enumerable.Range(0, labels.Count).GroupBy(i => lesionIds[i], StringComparer.Ordinal)
            .Select(g => (Id: g.Key, Images: g.ToArray(),
                Class: LesionSplit.LesionClass(g.Select(i => labels[i]))));
        foreach (var cls in byLesion.GroupBy(l => l.Class).OrderBy(g => g.Key))
        {
            var lesions = cls.OrderBy(l => l.Id, StringComparer.Ordinal).Select(l => l.Images).ToArray();
            var rng = SeededRandom.For(seed, (ulong)cls.Key, 0x601D);
            for (int i = lesions.Length - 1; i > 0; i--) { int j = rng.NextInt(i + 1); (lesions[i], lesions[j]) = (lesions[j], lesions[i]); }
            for (int i = 0; i < lesions.Length; i++) (i % 2 == 0 ? stream : golden).AddRange(lesions[i]);
        }
        stream.Sort(); golden.Sort();
        return (stream.ToArray(), golden.ToArray());
    }

    public static ImageSet Subset(ImageSet set, IReadOnlyList<int> indices) =>
        new(set.Size, indices.Select(i => set.Pixels[i]).ToArray(), indices.Select(i => set.Labels[i]).ToArray(), indices.Select(i => set.Ids[i]).ToArray());

    /// <summary>The int8 input of the model's head (what its Flatten view reads) for every image, from the integer engine.</summary>
    public static sbyte[][] HeadInputs(ModelPackage package, ImageSet set)
    {
        // The tensor behind the Flatten view (the spatial map, or its global average for a pooled head) holds the
        // same bytes in the same (HWC) order as the head's input.
        int feature = HeadInfo.Find(package.Graph)?.InputTensor ?? ReadoutUpdates.Head(package).Inputs[0];
        var spec = package.Graph.Tensors[package.Graph.InputTensor]; // the device's input quantization, not always p − 128
        var result = new sbyte[set.Count][];
        int workers = Math.Max(1, Math.Min(Par.Threads, 4));
        Parallel.For(0, workers, new ParallelOptions { MaxDegreeOfParallelism = workers }, w =>
        {
            using var engine = IntegerEngine.Create(package, KernelMode.Optimized, new EngineOptions { RetainTensors = [feature] });
            var input = new sbyte[set.Size * set.Size * 3];
            for (int i = w; i < set.Count; i += workers)
            {
                InputQuantizer.Quantize(set.Pixels[i], input, spec.Scale, spec.ZeroPoint);
                engine.Run(input);
                result[i] = engine.Activation(feature).ToArray();
            }
        });
        return result;
    }
}
