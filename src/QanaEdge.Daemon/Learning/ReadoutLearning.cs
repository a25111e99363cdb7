using System.Globalization;
using System.Security.Cryptography;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using QanaEdge.Daemon.Classification;
using QanaEdge.Daemon.Configuration;
using QanaEdge.Daemon.Storage;
using QanaEdge.Daemon.Updates;
using QanaEdge.Model.Graph;
using QanaEdge.Model.Packaging;
using QanaEdge.Runtime;
using QanaEdge.Training.Evaluation;
using QanaEdge.Training.Incremental;
using QanaEdge.Training.Pipeline;

namespace QanaEdge.Daemon.Learning;

/// <summary>
/// Learns the running model's readout from clinician labels, on the device (DESIGN.md, incremental learning: only the
/// readout changes, and a change is kept only if it loses no accuracy).
/// <para>
/// A case is a result a clinician labelled, with the int8 head input its model computed when it classified the image
/// (stored with the result; images are not kept). Cases count for the running model only when they were recorded by
/// the same backbone (<see cref="ReadoutUpdates.BackboneDigest"/>): readout updates keep them, a model update does not.
/// Once <see cref="LearningOptions.MinCases"/> are labelled, and again after every <see cref="LearningOptions.NewCases"/>
/// more, the cases are cut per class, in the order their labels came, alternately into a learned half and a checked
/// half, keeping the images of one lesion (when labels name it) on one side. <see cref="ReadoutLearner"/> (the
/// training pipeline's) learns from the first; the running readout and the learned one are run by the integer engine
/// on the second. The learned readout is kept only when it loses neither top-1 accuracy nor macro-F1 there and gains
/// on at least one (a change that gains nothing is not worth a new version). A kept readout is signed with the device's learner key and goes through <see cref="ModelUpdates"/> like
/// any update (verified, golden vectors reproduced on the engine, stored under the state folder, swapped in between
/// images, restored at start), then is published on <c>qana/{device}/readouts</c> through the outbox.
/// </para>
/// Every attempt is recorded in the store's learning log with its figures, including one whose learning diverged (its
/// loss or weights stopped being finite: nothing is applied); one runs at a time, in the background.
/// </summary>
public sealed class ReadoutLearning : IAsyncDisposable
{
    public const string Applied = "applied", NotKept = "not-kept", Refused = "refused", Unusable = "unusable", Diverged = "diverged";

    private readonly LearningOptions _options;
    private readonly ResultStore _store;
    private readonly ActiveModel _active;
    private readonly ModelUpdates _updates;
    private readonly SigningKey _key;
    private readonly string _topic;
    private readonly ILogger _log;
    private readonly Channel<bool> _signal = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
    private readonly CancellationTokenSource _stop = new();
    private Task? _loop;

    public ReadoutLearning(LearningOptions options, ResultStore store, ActiveModel active, ModelUpdates updates, SigningKey key, string readoutsTopic, ILogger<ReadoutLearning> log)
    {
        ArgumentNullException.ThrowIfNull(key);
        if (key.Role != SignerRole.Learner) throw new ArgumentException("the readout learner signs with a learner key", nameof(key));
        _options = options;
        _store = store;
        _active = active;
        _updates = updates;
        _key = key;
        _topic = readoutsTopic;
        _log = log;
    }

    /// <summary>A readout was applied and its message queued in the outbox (the publisher's cue).</summary>
    public event Action? Queued;

    /// <summary>Starts the background loop and looks once at what is already labelled.</summary>
    public void Start()
    {
        try { RecoverUnqueued(AtStart); }
        catch (Exception e) when (ResultStore.IsStorageFailure(e))
        {
            _log.LogError("Learned readouts not checked for unsent messages: the store failed ({Error}); they are checked at the next start", e.Message);
        }
        _loop = Task.Run(() => RunAsync(_stop.Token));
        Wake();
    }

    /// <summary>
    /// A readout this device learned is applied (persisted under the state folder) before its message is queued; a
    /// stop between the two would leave it running but never published. So at start every applied readout signed by
    /// this device's learner key that the update log does not record as learned is recorded and queued now. So it is
    /// again before a new learned readout is applied, which supersedes the applied ones and has their packages pruned
    /// (a store failure right after a swap also leaves one unqueued, and a restart would find it gone).
    /// </summary>
    private void RecoverUnqueued((string Reason, string Log) when)
    {
        var trust = new TrustStore([_key.PublicKey]);
        var recorded = _store.UpdateLog().Where(u => u.Topic == ResultStore.LearnedTopic).Select(u => u.Sha256).ToHashSet(StringComparer.Ordinal);
        foreach (var (sha, package) in _updates.AppliedReadouts())
        {
            if (recorded.Contains(sha) || !PackageVerifier.Verify(package, trust).IsValid) continue;
            _store.RecordLearnedReadout(sha, when.Reason, _topic, package);
            _log.LogWarning("Learned readout {Sha} was applied but not queued {When}: queued now on {Topic}", sha[..16], when.Log, _topic);
            Queued?.Invoke();
        }
    }

    private static readonly (string Reason, string Log) AtStart = ("applied before the daemon stopped; queued at the next start", "before the daemon stopped"),
        BeforeSuperseded = ("applied, but not queued then (the store failed); queued before a later readout superseded it", "when the store failed");

    /// <summary>A label was stored: look whether an attempt is due. Cheap, never blocks; wakes coalesce.</summary>
    public void Wake() => _signal.Writer.TryWrite(true);

    private async Task RunAsync(CancellationToken ct)
    {
        try
        {
            while (await _signal.Reader.WaitToReadAsync(ct).ConfigureAwait(false))
            {
                _signal.Reader.TryRead(out _);
                try { Attempt(); }
                catch (Exception e) when (ResultStore.IsStorageFailure(e))
                {
                    // Nothing is lost: the labels stay in the store, and the next label wakes the learner again.
                    _log.LogWarning("Readout learning postponed: the store failed ({Error})", e.Message);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    _log.LogError(e, "Readout learning failed");
                }
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested) { }
    }

    /// <summary>
    /// One look at the labelled cases: learns, checks and applies when an attempt is due. Returns the attempt (also
    /// recorded in the store), or null when none was due.
    /// </summary>
    public LearningAttempt? Attempt()
    {
        IClassifierProvider provider = _active.Provider;
        ModelPackage running = provider.Package;
        if (provider.Backbone is not { } backbone) return null;   // no dense readout: nothing to learn

        List<LabelledCase> stored = _store.LabelledCases(backbone, out int unusable);
        string[] classes = running.Manifest.Classes;
        var cases = new List<(sbyte[] Input, int Label)>(stored.Count);
        var lesions = new List<string?>(stored.Count);
        int featureLength = running.Graph.Tensors[ReadoutUpdates.Head(running).Inputs[0]].Length;
        foreach (LabelledCase c in stored)
        {
            int label = Array.FindIndex(classes, code => string.Equals(code, c.Label, StringComparison.OrdinalIgnoreCase));
            if (label >= 0 && c.HeadInput.Length == featureLength)
            {
                cases.Add((c.HeadInput, label));
                lesions.Add(c.LesionId);
            }
            else unusable++;
        }
        int last = _store.LearningLog().LastOrDefault(a => a.Backbone == backbone)?.Cases ?? 0;
        if (cases.Count < _options.MinCases || cases.Count - last < (last == 0 ? 0 : _options.NewCases))
        {
            _log.LogDebug("Readout learning not due: {Cases} labelled cases of the running backbone ({Unusable} labelled results unusable), last attempt at {Last}",
                cases.Count, unusable, last);
            return null;
        }

        var (learn, check) = Split(cases, classes.Length, lesions);
        string name = $"{running.Manifest.ModelId} {running.Manifest.Version}";
        var figures = new Dictionary<string, double> { ["cases"] = cases.Count, ["learned"] = learn.Count, ["checked"] = check.Count, ["unusable"] = unusable };
        if (learn.Count == 0 || check.Count == 0)
            return Record(backbone, cases.Count, Unusable, $"{cases.Count} cases give no checked half (every class has a single case)", figures);
        // A running version at the end of its learned line leaves no version to give a learned readout, until the
        // vendor's next release; so does one whose learned version would end the line, which ModelUpdates refuses:
        // learned and checked first, the readout was refused at every round.
        if (!ModelUpdates.TryLearnedVersion(running.Manifest.Version, out string? version) || ModelUpdates.EndsLearnedLine(version))
            return Record(backbone, cases.Count, Unusable,
                $"{name} leaves no learned version above it that this device could apply (a learned version's counter must stay below {long.MaxValue - 1})", figures);

        var learner = new ReadoutLearner(running, new ReadoutLearnerOptions
        {
            Epochs = _options.Epochs, LearningRate = (float)_options.LearningRate, Seed = (ulong)cases.Count,
        });
        double[] losses;
        try { losses = learner.Learn(learn.Select(c => c.Input).ToList(), learn.Select(c => c.Label).ToList()); }
        catch (TrainingDivergedException e)
        {
            // The head is lost, so there is nothing to check or apply. The attempt is recorded like any other: the next
            // one comes after NewCases more labels, with the cases kept in the store (a lower learning rate, set and the
            // daemon restarted, applies to it).
            _log.LogWarning("Readout for {Model} not learned from {Cases} labelled cases: {Reason}; nothing applied: the model stays, and its labelled cases are kept for the next attempt",
                name, learn.Count, e.Message);
            return Record(backbone, cases.Count, Diverged, $"learned from {learn.Count} labelled cases: {e.Message}", figures);
        }
        ModelPackage update;
        ClassificationMetrics before, after;
        string which = "the running readout";
        try
        {
            // The running readout too is measured as a package of its own: one the validation refused (a model id too
            // long for the readout's, before ReadoutUpdates.UpdateId) used to escape the attempt as this error did.
            before = Evaluate(RunningReadout(running), check);
            which = "the learned readout";
            update = learner.CreateUpdate(version);
            after = Evaluate(update, check);
        }
        catch (Exception e) when (e is InvalidGraphException or PackageFormatException)
        {
            // The learned head, quantized onto the model's grids, is one the engine will not prepare (a requantization
            // multiplier it cannot represent, an int32 accumulator that could overflow) or the package validation
            // refuses: nothing to check or apply, but an attempt like any other, recorded with its reason, rather than
            // an error that left no trace in the learning log and came again at every label.
            _log.LogWarning("Readout for {Model} learned from {Cases} labelled cases cannot run: {Reason}; nothing applied: the model stays, and its labelled cases are kept for the next attempt",
                name, learn.Count, e.Message);
            string refusal = e is InvalidGraphException ? $"the engine cannot run {which}" : $"{which} is not a valid package";
            return Record(backbone, cases.Count, Refused, $"learned from {learn.Count} labelled cases: {refusal}: {e.Message.ReplaceLineEndings(" ")}", figures);
        }
        figures["loss_first"] = losses[0];
        figures["loss_last"] = losses[^1];
        figures["top1_before"] = before.Top1;
        figures["top1_after"] = after.Top1;
        figures["macro_f1_before"] = before.MacroF1;
        figures["macro_f1_after"] = after.MacroF1;
        string measured = string.Create(CultureInfo.InvariantCulture,
            $"learned from {learn.Count} labelled cases, checked on {check.Count}: top-1 {before.Top1:P1} -> {after.Top1:P1}, macro-F1 {before.MacroF1:F3} -> {after.MacroF1:F3}");
        if (Verdict(before, after) is { } why)
        {
            _log.LogInformation("Readout for {Model} {Measured}: not kept ({Why})", name, measured, why);
            return Record(backbone, cases.Count, NotKept, $"{measured}; not kept: {why}", figures);
        }

        byte[] signed = PackageSigner.Sign(PackageWriter.ToBytes(update), _key);
        string sha = Convert.ToHexStringLower(SHA256.HashData(signed));
        // Applied, this readout supersedes the learned ones before it, whose packages are then pruned (ModelUpdates):
        // one not yet queued for publishing (a stop or a store failure right after its swap) is queued first.
        RecoverUnqueued(BeforeSuperseded);
        var (outcome, reason) = _updates.Handle(signed, sha);
        if (outcome != ModelUpdates.Applied)
        {
            _store.LogUpdate(ResultStore.LearnedTopic, sha, signed.Length, outcome, reason);
            _log.LogWarning("Readout for {Model} {Measured}: kept, but the update was {Outcome}: {Reason}", name, measured, outcome, reason);
            return Record(backbone, cases.Count, Refused, $"{measured}; {outcome}: {reason}", figures);
        }
        // Learned readouts leave the device (DESIGN.md); the outbox holds the message until the broker acknowledges it.
        // (Should the device stop between the swap above and this line, RecoverUnqueued finds the readout at the next start.)
        _store.RecordLearnedReadout(sha, reason, _topic, signed);
        Queued?.Invoke();
        _log.LogWarning("LEARNED: readout {Version} for {Model} {Measured}: applied and queued on {Topic}", update.Manifest.Version, name, measured, _topic);
        return Record(backbone, cases.Count, Applied, $"{measured}; applied as {update.Manifest.Version}", figures);
    }

    private LearningAttempt Record(string backbone, int cases, string outcome, string reason, IReadOnlyDictionary<string, double> figures)
    {
        var attempt = new LearningAttempt(backbone, cases, outcome, reason, DateTime.UtcNow);
        _store.LogLearning(attempt, figures);
        return attempt;
    }

    /// <summary>
    /// Per class, in the order the labels came, lesions alternate between the learned half and the checked half, so both
    /// hold every class with two or more lesions. Every image of a lesion goes where its first went, so the check is never
    /// made on another image of a lesion the readout learned from (which would flatter it). <paramref name="lesions"/>
    /// gives each case's lesion id, as the clinician's label named it; a case without one is a lesion of its own.
    /// </summary>
    public static (List<(sbyte[] Input, int Label)> Learn, List<(sbyte[] Input, int Label)> Check) Split(
        IReadOnlyList<(sbyte[] Input, int Label)> cases, int classes, IReadOnlyList<string?>? lesions = null)
    {
        if (lesions is not null && lesions.Count != cases.Count) throw new ArgumentException("one lesion id (or null) per case", nameof(lesions));
        var seen = new int[classes];
        var learnsFrom = new Dictionary<string, bool>(StringComparer.Ordinal);
        var learn = new List<(sbyte[], int)>();
        var check = new List<(sbyte[], int)>();
        for (int i = 0; i < cases.Count; i++)
        {
            string? lesion = lesions?[i];
            if (lesion is null || !learnsFrom.TryGetValue(lesion, out bool toLearn))
            {
                toLearn = seen[cases[i].Label]++ % 2 == 0;
                if (lesion is not null) learnsFrom[lesion] = toLearn;
            }
            (toLearn ? learn : check).Add(cases[i]);
        }
        return (learn, check);
    }

    /// <summary>Why a learned readout is not kept (null: kept): it must lose neither top-1 nor macro-F1 on the checked half, and gain on one.</summary>
    public static string? Verdict(ClassificationMetrics before, ClassificationMetrics after)
    {
        if (after.Top1 < before.Top1 || after.MacroF1 < before.MacroF1) return "it loses accuracy on the checked half";
        if (after.Top1 > before.Top1 || after.MacroF1 > before.MacroF1) return null;
        return "it gains nothing on the checked half";
    }

    /// <summary>The running model's readout as a readout graph (head input → dense → readout), to be measured like a learned one.</summary>
    public static ModelPackage RunningReadout(ModelPackage running)
    {
        Node head = ReadoutUpdates.Head(running);
        return ReadoutUpdates.Create(running, running.Manifest.Version, head.Weights!, head.WeightScales!, head.Bias!);
    }

    /// <summary>Top-1 and macro-F1 of a readout graph (head input → dense → readout) on cases, by the device's own decision rule.</summary>
    public static ClassificationMetrics Evaluate(ModelPackage readout, List<(sbyte[] Input, int Label)> cases)
    {
        using IntegerEngine engine = IntegerEngine.Create(readout, KernelMode.Optimized);
        int k = readout.Manifest.Classes.Length;
        var probabilities = new float[cases.Count][];
        var predictions = new int[cases.Count];
        for (int i = 0; i < cases.Count; i++)
        {
            engine.Run(cases[i].Input);
            probabilities[i] = new float[k];
            engine.GetProbabilities(probabilities[i]);
            predictions[i] = SpikingReadout.Decide(probabilities[i], engine.Logits);
        }
        return ClassificationMetrics.Compute(cases.Select(c => c.Label).ToArray(), probabilities, predictions, readout.Manifest.Classes);
    }

    public async ValueTask DisposeAsync()
    {
        _signal.Writer.TryComplete();
        await _stop.CancelAsync().ConfigureAwait(false);
        if (_loop is not null) await _loop.ConfigureAwait(false);
        _stop.Dispose();
    }
}
