// make learning-sim [LEARNING_SIM_ARGS="MIN_CASES NEW_CASES"]: the device's readout learning replayed on validation.
//
// The validation split (lesion-grouped, the shipped model's) is cut by lesion into a labelled stream and a held-out half
// (IncrementalStage.SplitByLesion). A clinic labels the stream's images one by one, in a shuffled order, with their
// HAM10000 diagnosis and lesion id; every MIN_CASES, then NEW_CASES, labels the device makes an attempt by its own rule
// (ReadoutLearning.Split, ReadoutLearner, ReadoutLearning.Verdict). The readout it ends with is compared with the
// shipped one on the held-out half, which no attempt saw. Head inputs come from the device's path (LesionClassifier,
// tiling off, so the figures are of the readout alone). Four stream orders, four step sizes; the test split is not used.
using System.Globalization;
using QanaEdge.Daemon.Learning;
using QanaEdge.Imaging;
using QanaEdge.Model.Packaging;
using QanaEdge.TestSupport;
using QanaEdge.Training.Data;
using QanaEdge.Training.Evaluation;
using QanaEdge.Training.Incremental;
using QanaEdge.Training.Pipeline;

int minCases = args.Length > 0 ? int.Parse(args[0], CultureInfo.InvariantCulture) : 40;
int newCases = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 20;
ModelPackage shipped = PackageReader.Load(Path.Combine(TestData.RepositoryRoot, "firmware-models", "qana-paper8-64.qana"));
IReadOnlyList<Ham10000Row> val = LesionSplit.Create(Ham10000Index.Load(TestData.Ham10000Images, TestData.Ham10000Labels)).Validation;
var (streamIdx, heldIdx) = IncrementalStage.SplitByLesion(val.Select(r => r.ClassIndex).ToList(), val.Select(r => r.LesionId ?? r.ImageId).ToList(), 7);
sbyte[][] inputs;
using (var engine = LesionClassifier.CreateEngine(shipped))
{
    var classifier = new LesionClassifier(shipped, engine, new ClassifierOptions { Tiling = false });
    inputs = val.Select(r => classifier.Classify(File.ReadAllBytes(r.ImagePath)).HeadInput!).ToArray();
}
var held = heldIdx.Select(i => (inputs[i], val[i].ClassIndex)).ToList();
ClassificationMetrics h0 = ReadoutLearning.Evaluate(ReadoutLearning.RunningReadout(shipped), held);
Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
    $"validation {val.Count} images: stream {streamIdx.Length}, held-out {held.Count} (shipped readout: top-1 {h0.Top1:P1}, macro-F1 {h0.MacroF1:F3}, balanced accuracy {h0.BalancedAccuracy:F3}); attempts at {minCases}, then every {newCases}"));
Console.WriteLine("| step size | epochs | order | attempts (+ kept) | held-out top-1 | macro-F1 | balanced accuracy |");
Console.WriteLine("|---|---|---|---|---|---|---|");
foreach (var (rate, epochs) in new[] { (1e-4, 10), (1e-3, 10), (1e-3, 50), (1e-2, 10) })
foreach (int order in new[] { 7, 8, 9, 10 })
{
    var shuffle = new Random(order);
    int[] stream = streamIdx.OrderBy(_ => shuffle.Next()).ToArray();
    ModelPackage running = shipped;
    string attempts = "";
    for (int n = minCases; n <= stream.Length; n += newCases)
    {
        var cases = stream.Take(n).Select(i => (inputs[i], val[i].ClassIndex)).ToList();
        // The clinic names each image's lesion, as HAM10000's metadata does.
        var (learn, check) = ReadoutLearning.Split(cases, running.Manifest.Classes.Length, stream.Take(n).Select(i => val[i].LesionId).ToList());
        var learner = new ReadoutLearner(running, new ReadoutLearnerOptions { Epochs = epochs, LearningRate = (float)rate, Seed = (ulong)n });
        learner.Learn(learn.Select(c => c.Input).ToList(), learn.Select(c => c.Label).ToList());
        ModelPackage update = learner.CreateUpdate(IncrementalStage.NextVersion(running.Manifest.Version));
        bool kept = ReadoutLearning.Verdict(ReadoutLearning.Evaluate(ReadoutLearning.RunningReadout(running), check), ReadoutLearning.Evaluate(update, check)) is null;
        if (kept) running = ReadoutUpdates.Apply(running, update);
        attempts += kept ? "+" : ".";
    }
    ClassificationMetrics h = ReadoutLearning.Evaluate(ReadoutLearning.RunningReadout(running), held);
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"| {rate:G2} | {epochs} | {order} | `{attempts}` | {h.Top1:P1} | {h.MacroF1:F3} | {h.BalancedAccuracy:F3} |"));
}
