using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using Microsoft.Extensions.Logging;
using QanaEdge.Daemon.Classification;
using QanaEdge.Daemon.Configuration;
using QanaEdge.Imaging;
using QanaEdge.Model;
using QanaEdge.Model.Packaging;
using QanaEdge.Runtime;

namespace QanaEdge.Daemon.Updates;

/// <summary>
/// Applies signed model and readout updates to the running daemon and brings them back at start.
/// <para>
/// An update is applied only when all of this holds, else it is refused with a one-line reason and the running model
/// stays: the signature verifies against the trust store and the device's learner key (<see cref="DeviceTrust"/>, <see cref="PackageVerifier"/>); a readout update names the
/// running model (id and version) as its base; a model update continues the running model (same id: a different
/// model is a firmware change, made through Qana:Model) with the same input contract (image shape and classes); its
/// version is newer than the running one (a version already running, or an older one, is refused; the same bytes
/// again are reported as already applied); it carries golden vectors and they reproduce on the engine the daemon will
/// use; one classifier of it can be built. Only then is it written under the state folder and swapped in
/// (<see cref="ActiveModel.Swap"/>: between images, nothing lost or classified twice); if it cannot be written the
/// outcome is <see cref="NotStored"/>.
/// </para>
/// </summary>
/// <param name="failover">Tries the card again when an update leaves the model off it; without one, only the next update or a restart does.</param>
/// <param name="applied">The store of applied updates under <paramref name="stateDir"/>; a test passes one whose folder flush it controls.</param>
public sealed class ModelUpdates(ModelAtStart start, string stateDir, DeviceTrust trust, EngineChoice choice, ILogger<ModelUpdates> log,
    CardFailover? failover = null, AppliedUpdates? applied = null)
{
    public const string Applied = "applied", Refused = "refused", AlreadyApplied = "already-applied";

    /// <summary>
    /// The update passed every check but could not be written under the state folder (a full or failing disk): not a
    /// verdict on the package, so the caller should have it sent again rather than acknowledge it.
    /// </summary>
    public const string NotStored = "not-stored";

    private readonly ActiveModel _active = start.Active;
    private readonly AppliedUpdates _applied = applied ?? new(ModelsDir(stateDir));
    private readonly Lock _gate = new();
    // The applied state the running model was built from: none when the start fell back to the configured model, so a
    // broken chain found at start is replaced, not extended.
    private AppliedUpdates.State _state = start.Applied;
    // Versions below this are refused while the start's fall-back lasts: the stored updates it could not use are newer
    // (StoredVersionFloor). Cleared by the first update applied, which replaces them.
    private string? _floor = start.VersionFloor;

    public static string ModelsDir(string stateDir) => Path.Combine(stateDir, "models");

    /// <summary>The signed bytes of every readout update applied to the running model, in the order applied.</summary>
    public IReadOnlyList<(string Sha, byte[] Package)> AppliedReadouts()
    {
        lock (_gate)
        {
            var list = new List<(string, byte[])>();
            foreach (string sha in _state.Readouts)
            {
                try { list.Add((sha, File.ReadAllBytes(_applied.PackagePath(sha)))); }
                catch (IOException) { }   // restored at start from this very file; if it went since, there is nothing to resend
            }
            return list;
        }
    }

    /// <summary>
    /// The SHA-256 names of the packages applied, and of any other package file under the state folder (a start that
    /// fell back to the configured model leaves them there, to be used again by a later start).
    /// </summary>
    public IReadOnlySet<string> StoredPackages()
    {
        lock (_gate)
        {
            // A folder that cannot be listed throws (the pruning pass fails and is tried again), rather than leave out
            // packages whose entries are still needed.
            var stored = new HashSet<string>(_state.InOrder, StringComparer.Ordinal);
            stored.UnionWith(_applied.StoredPackages());
            return stored;
        }
    }

    /// <summary>Handles one package received on an updates topic: (outcome, one-line reason). One at a time.</summary>
    public (string Outcome, string Reason) Handle(byte[] payload, string sha)
    {
        // The card gate too: the card's return after a fault (CardFailover) opens and programs the card, and two
        // programs at once would leave it holding one while a provider believes it holds the other.
        lock (_gate)
            lock (_active.CardGate)
                return HandleLocked(payload, sha);
    }

    private (string Outcome, string Reason) HandleLocked(byte[] payload, string sha)
    {
        if (payload.Length == 0) return (Refused, "empty message");
        if (!TryVerify(payload, trust, out ModelPackage? update, out SignerRole signer, out string verdict)) return (Refused, verdict);
        AppliedUpdates.State state = _state;
        ModelPackage running = _active.Provider.Package;
        string runningName = $"{running.Manifest.ModelId} {running.Manifest.Version}";
        if (state.Contains(sha))
            return (AlreadyApplied, $"{Describe(update!)} is already applied (identical package); running {runningName}");
        if (SignedAgain(update!, state) is { } applied)
            return (AlreadyApplied, $"{Describe(update!)} is already applied (the same package signed again: {applied}); running {runningName}");

        ModelManifest m = update!.Manifest;
        if (m.Kind == PackageKind.ReadoutUpdate && (m.BaseModelId != running.Manifest.ModelId || m.BaseModelVersion != running.Manifest.Version))
            return (Refused, $"{Describe(update)} is for {m.BaseModelId} {m.BaseModelVersion}; this device runs {runningName}");
        if (m.Kind == PackageKind.Model)
        {
            if (m.ModelId != running.Manifest.ModelId)
                return (Refused, $"{Describe(update)} is another model than the running {runningName} (a different model is a firmware change: Qana:Model)");
            if (m.Input.Height != running.Manifest.Input.Height || m.Input.Width != running.Manifest.Input.Width || m.Input.Channels != running.Manifest.Input.Channels
                || !m.Classes.SequenceEqual(running.Manifest.Classes))
                return (Refused, $"{Describe(update)} changes the input contract ({m.Input.Height}x{m.Input.Width}x{m.Input.Channels}, classes {string.Join(',', m.Classes)}) of {runningName}");
        }
        int order = CompareVersions(m.Version, running.Manifest.Version);
        if (order == 0) return (Refused, $"{Describe(update)}: version {m.Version} is already running, from a different package");
        if (order < 0) return (Refused, $"{Describe(update)}: downgrade from the running {runningName}");
        if (_floor is { } floor && CompareVersions(m.Version, floor) < 0)
            return (Refused, $"{Describe(update)}: older than {floor}, which the state folder holds from updates the start could not use " +
                $"(a rollback; it is refused until an update of {floor} or later is applied, or a restart uses the stored updates again)");
        if (signer == SignerRole.Learner && !IsLearnedLine(m.Version, running.Manifest.Version))
            return (Refused, $"{Describe(update)}: a learner key may only give versions of the learned line of the running {runningName} " +
                $"({(TryLearnedVersion(running.Manifest.Version, out string? learned) ? learned : "none")} and on, below the next release); a higher one would lock out the vendor's releases");
        if (LineEndRefusal(update) is { } ends) return (Refused, ends);
        if (signer == SignerRole.Learner && m.Kind == PackageKind.ReadoutUpdate && ClinicalSettingsChanged(running.Manifest, m) is { } changed)
            return (Refused, $"{Describe(update)}: a learner key may not change the clinical settings of the running {runningName} ({changed})");

        ModelPackage candidate = update;
        if (m.Golden.Length == 0) return (Refused, $"{Describe(update)} carries no golden self-test vectors");
        if (m.Kind == PackageKind.ReadoutUpdate)
        {
            if (CheckReadoutGolden(update) is { } failed) return (Refused, failed);
            try { candidate = ReadoutUpdates.Apply(running, update); }
            catch (PackageFormatException e) { return (Refused, $"{Describe(update)} does not fit {runningName}: {e.Message}"); }
        }

        var next = m.Kind == PackageKind.Model ? new AppliedUpdates.State(sha, [])
            : new AppliedUpdates.State(state.Model, [.. signer == SignerRole.Learner ? WithoutLearnedTail(state.Readouts) : state.Readouts, sha]);
        string source = $"applied update: {Describe(update)} ({_applied.PackagePath(sha)})";
        var outcome = Swap(candidate, _applied.PackagePath(sha), source, () => _applied.Commit(next, sha, payload));
        if (outcome.Outcome != Applied) return outcome;
        _state = next;
        _floor = null;
        log.LogWarning("MODEL: now {ModelId} {Version} on {Engine}: {Source}", candidate.Manifest.ModelId, candidate.Manifest.Version, _active.Provider.EngineName, source);
        return outcome;
    }

    /// <summary>
    /// <paramref name="readouts"/> without the learned readouts at their end, which a new learned readout supersedes: a
    /// readout update replaces the whole head and readout, so of a run of learned readouts only the last one decides
    /// the model, and at start it is applied over the model the run began on (<see cref="TryRestore"/>). Without this,
    /// every readout the device learned stayed under the state folder and was verified again at every start.
    /// Learned means signed by a learner key: a learned readout always lies on the learned line of the model below it,
    /// below the vendor's next release. A vendor's readout is never dropped (the learned ones above it are for its
    /// version), nor is one whose file cannot be read or verified now (kept, it fails at start and says why).
    /// </summary>
    private List<string> WithoutLearnedTail(IReadOnlyList<string> readouts)
    {
        int keep = readouts.Count;
        while (keep > 0 && IsLearned(readouts[keep - 1])) keep--;
        return [.. readouts.Take(keep)];
    }

    private bool IsLearned(string sha)
    {
        byte[] bytes;
        try { bytes = File.ReadAllBytes(_applied.PackagePath(sha)); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return false; }
        return TryVerify(bytes, trust, out ModelPackage? package, out SignerRole signer, out _)
            && signer == SignerRole.Learner && package!.Manifest.Kind == PackageKind.ReadoutUpdate;
    }

    /// <summary>
    /// Checks the candidate on the engine it will run on and swaps it in. On the managed engine everything is built
    /// and checked while the old model keeps classifying, and the swap itself only exchanges providers. An Akida card
    /// holds one program: the golden vectors are first run on the managed engine (the card's logits are the managed
    /// engine's, bit for bit), then, with the workers paused between images, the card is reprogrammed and checked
    /// again; if that fails, or the card refuses the program, the old model is programmed back.
    /// </summary>
    private (string Outcome, string Reason) Swap(ModelPackage candidate, string path, string source, Func<string?> persist)
    {
        string name = $"{candidate.Manifest.ModelId} {candidate.Manifest.Version}";
        IClassifierProvider current = _active.Provider;
        if (!current.HoldsDevice)
        {
            // Out of use after a fault, the card still decides what may run: a model it cannot hold would leave it idle
            // once it is back, as on the card itself (below).
            if (_active.CardFault is { } fault && choice.UseAkida && candidate.Manifest.Profile != QuantizationProfile.Akd1000)
                return (Refused, $"{name} is not of the akd1000 profile and cannot run on the card, out of use after a fault ({fault}) but still this device's engine");
            if (!TryBuild(candidate, path, out IClassifierProvider? next, out string failure)) return (Refused, failure);
            string? notDurable;
            try { notDurable = persist(); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                next!.Dispose();
                return (NotStored, $"{name} passed its checks but could not be stored: {e.Message}");
            }
            string warning = DurabilityWarning(name, notDurable);
            _active.Swap(_ => (next!, source + warning, 0));
            // Off the card because it refused the previous model, the card gets a try with this one.
            failover?.ModelReplaced();
            return (Applied, $"{name} on {next!.EngineName}{warning}");
        }

        if (CheckGolden(candidate, $"{name}: ", " (managed engine)") is { } failed) return (Refused, failed);
        return _active.Swap(old =>
        {
            ModelPackage oldPackage = old.Package;
            string oldPath = old.PackagePath, oldSource = _active.Source;
            bool notStored = false;
            old.Dispose();   // the card, free for the new program
            // From here on the workers have no usable model until one is returned, so nothing may escape: whatever
            // fails, the old model is programmed back (a card fault in the new program's self-test used to leave the
            // disposed provider in place, and every capture after it was quarantined).
            IClassifierProvider? next = null;
            string failure;
            try
            {
                if (TryBuild(candidate, path, out next, out failure) && !next!.HoldsDevice)
                {
                    // The card refused the program and the factory fell back to the managed engine. The update would
                    // leave the card idle and cost the power it saves, so it is refused and the card keeps its model.
                    failure = $"{name} cannot run on the card ({next.EngineReason})";
                    next.Dispose();
                    next = null;
                }
                if (next is not null)
                {
                    try
                    {
                        string warning = DurabilityWarning(name, persist());
                        return (next, source + warning, (Applied, $"{name} on {next.EngineName}{warning}"));
                    }
                    catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                    {
                        failure = $"{name} passed its checks but could not be stored: {e.Message}";
                        notStored = true;
                    }
                }
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                failure = $"{name} failed on the card: {e.GetType().Name}: {e.Message}";
            }
            next?.Dispose();
            log.LogError("Update {Model} failed on the card ({Failure}): programming {Old} back", name, failure, oldPackage.Manifest.Version);
            var (back, backSource) = ProgramBack(oldPackage, oldPath, oldSource);
            return (back, backSource, (notStored ? NotStored : Refused, failure));
        });
    }

    /// <summary>
    /// The durability warning of <see cref="AppliedUpdates.Commit"/> (null: none), logged, as a suffix for the
    /// outcome's reason and the model's source in the status: the update is in effect and the next start runs it, but
    /// a power cut before the kernel writes the state folder out may bring the previous state back. The status says so
    /// until the next change, whose flush of the same folder settles it.
    /// </summary>
    private string DurabilityWarning(string name, string? notDurable)
    {
        if (notDurable is null) return "";
        log.LogWarning("MODEL: {Model} is in effect, but its state may not survive a power cut: {Warning}", name, notDurable);
        return $"; not durable yet: {notDurable}";
    }

    /// <summary>
    /// The model that ran before a failed swap, on the card again, once the card has reproduced its check vectors
    /// there (a card that just failed an update is not trusted on its word that it programmed); if the card cannot take
    /// it, on the managed engine, so the device keeps classifying (the status then names the managed engine and why),
    /// and the card is out of use after a fault: <see cref="CardFailover"/> tries it again as after a fault while
    /// classifying.
    /// </summary>
    private (IClassifierProvider Provider, string Source) ProgramBack(ModelPackage package, string path, string source)
    {
        string why;
        try
        {
            if (ClassifierFactory.TryOnCardChecked(package, path, choice, out IClassifierProvider? onCard, out why, out _)) return (onCard, source);
        }
        catch (Exception e) when (e is not OutOfMemoryException) { why = e.Message; }
        log.LogCritical("The card cannot take {Model} back ({Error}): running it on the managed engine", package.Manifest.Version, why);
        IClassifierProvider managed = ClassifierFactory.Create(package, path, ClassifierFactory.AfterCardFault(choice, why));
        return (managed, failover is null ? source : failover.Left(source, why));
    }

    /// <summary>
    /// A readout update's golden vectors are head inputs with the new head's logits (its graph is head input → dense →
    /// readout), so they run on the update's own graph, on the managed engine; the patched model then has no golden
    /// vectors of its own (the model's belong to the old head), and building one classifier of it is its check.
    /// </summary>
    private static string? CheckReadoutGolden(ModelPackage update)
        => CheckGolden(update, $"{Describe(update)}: ", "");

    /// <summary>
    /// The package's golden vectors on the managed engine: null when they reproduce, else why not, in one line. A valid
    /// package can still be one the engine refuses to prepare (a multiplier it cannot represent, an accumulator that could
    /// overflow int32): that is a refusal too, never an exception out of <see cref="Handle"/>, which would leave the
    /// update without an outcome or an update-log entry and unacknowledged, to come back at every session.
    /// </summary>
    private static string? CheckGolden(ModelPackage package, string prefix, string suffix)
    {
        try
        {
            using IInferenceEngine engine = LesionClassifier.CreateEngine(package);
            return GoldenVectors.Check(package, engine) is { } failed ? $"{prefix}{failed}{suffix}" : null;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            return $"{prefix}the engine cannot run it: {OneLine(e.Message)}{suffix}";
        }
    }

    private static string OneLine(string message) => message.ReplaceLineEndings(" ");

    /// <summary>
    /// A provider for <paramref name="package"/> on the chosen engine, one classifier built, golden vectors reproduced.
    /// Any failure, a card fault included, refuses the package: the running model goes on instead.
    /// </summary>
    private bool TryBuild(ModelPackage package, string path, out IClassifierProvider? provider, out string failure)
        => ClassifierFactory.TryCreateChecked(package, path, Choice, out provider, out failure);

    /// <summary>
    /// The engine choice for a new provider: the one taken at start, or the managed engine while the card is out of
    /// use after a fault (its return, <see cref="CardFailover"/>, then takes the updated model onto the card).
    /// </summary>
    private EngineChoice Choice => _active.CardFault is { } why ? ClassifierFactory.AfterCardFault(choice, why) : choice;

    /// <summary>
    /// The model the daemon starts with: the configured package (Qana:Model, else the firmware default), with the
    /// applied updates on top when there are any and they still hold. Each applied package is verified again against
    /// the trust store, must continue the configured model (same id and a newer version: an operator or firmware
    /// that installs a newer package of the model wins over older updates, and one that installs a different model
    /// drops them), and the result's golden vectors must reproduce on the engine: on the card, or, when the card fails
    /// them, on the managed engine, where the result then runs out of use after a fault until the card passes
    /// (<see cref="ClassifierFactory.TryCreateCheckedAtStart"/>). Otherwise the configured package runs, and
    /// <see cref="ActiveModel.Source"/> and <see cref="ModelAtStart.Problem"/> say why.
    /// </summary>
    public static ModelAtStart Start(QanaOptions options, DeviceTrust trust, EngineChoice choice)
    {
        var (configured, configuredPath) = PackageClassifierProvider.LoadPackage(options.Model);
        var applied = new AppliedUpdates(ModelsDir(options.StateDir));
        string firmware = $"{(options.Model is null ? "firmware" : "configured")} model {configuredPath}";
        string? problem;
        try
        {
            AppliedUpdates.State state = applied.Read();
            if (state.IsEmpty) return new ModelAtStart(Configured(configured, configuredPath, choice, firmware), state, null);
            problem = TryRestore(configured, applied, state, trust, choice, out IClassifierProvider? provider, out string source, out string? cardFault);
            if (problem is null) return new ModelAtStart(OnEngine(provider!, source, cardFault), state, null);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // Whatever stops the applied updates from running (a file, a key, a self-test the managed engine fails too), the
            // configured model still starts: a device that cannot start helps nobody.
            problem = $"{e.GetType().Name}: {e.Message}";
        }
        problem = $"applied update not used: {problem}";
        return new ModelAtStart(Configured(configured, configuredPath, choice, $"{firmware}; {problem}"),
            AppliedUpdates.State.None, problem, StoredVersionFloor(applied, configured));
    }

    /// <summary>
    /// The configured model, on the card only once the card has reproduced its check vectors there
    /// (<see cref="ClassifierFactory.CreateAtStart"/>); if the card failed them, on the managed engine and out of use
    /// after a fault (<see cref="ActiveModel.CardFault"/>, the source marked as <see cref="CardFailover"/> marks it), so
    /// that the daemon's <see cref="CardFailover.FailedAtStart"/> tries the card again.
    /// </summary>
    private static ActiveModel Configured(ModelPackage configured, string path, EngineChoice choice, string source)
        => OnEngine(ClassifierFactory.CreateAtStart(configured, path, choice, out string? cardFault), source, cardFault);

    /// <summary>The model a start runs: on the managed engine and out of use after a fault when the card failed its check (<paramref name="cardFault"/>).</summary>
    private static ActiveModel OnEngine(IClassifierProvider provider, string source, string? cardFault) => cardFault is null
        ? new ActiveModel(provider, source)
        : new ActiveModel(provider, CardFailover.MarkedSource(source, cardFault)) { CardFault = cardFault };

    /// <summary>
    /// The highest version of <paramref name="configured"/>'s model among the applied packages a start could not use,
    /// or null. They stay under the state folder until the next change, and the reasons a start cannot use them may
    /// pass (a trust folder that did not read, a file the disk did not return): without this floor, an older
    /// vendor-signed package replayed meanwhile, newer only than the configured model, was applied and pruned them, a
    /// rollback the running chain would have refused. Read without the trust store, which may be what failed: these
    /// files passed it when they were applied, and a file put there by hand can only raise the floor, so refuse
    /// updates, never admit an older one. When <c>active</c> itself is damaged, every package in the folder counts: one
    /// it no longer names (replaced, or written before a crash) can only raise the floor too. Best effort: what does not
    /// read counts for nothing, nor does a version that ends its learned line, which no start will use, nor a readout
    /// a learner key signed (by the role its signature block claims): the floor is lifted by the vendor sending the
    /// newest again, and a learned readout is this device's own, which no vendor sends; the vendor's packages it was
    /// learned over are stored beside it and count. Counted, a learned readout over a stored vendor update set the floor
    /// above that update, which sent again was then refused as a rollback.
    /// </summary>
    private static string? StoredVersionFloor(AppliedUpdates applied, ModelPackage configured)
    {
        string? floor = null;
        try
        {
            IEnumerable<string> stored;
            try { stored = applied.Read().InOrder; }
            catch (InvalidDataException) { stored = applied.StoredPackages(); }
            foreach (string sha in stored)
            {
                ModelPackage package;
                try { package = PackageReader.Load(File.ReadAllBytes(applied.PackagePath(sha))); }
                catch (Exception e) when (e is PackageFormatException or IOException or UnauthorizedAccessException) { continue; }
                ModelManifest m = package.Manifest;
                if (package.Signature?.Role == SignerRole.Learner) continue;
                // A version that ends its learned line is refused for good (EndsLearnedLine), not for a reason that may
                // pass: as a floor it would refuse this device's learned readouts and every vendor update below it.
                if (EndsLearnedLine(m.Version)) continue;
                string id = m.Kind == PackageKind.ReadoutUpdate ? m.BaseModelId ?? "" : m.ModelId;
                if (id == configured.Manifest.ModelId && (floor is null || CompareVersions(m.Version, floor) > 0)) floor = m.Version;
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException) { }
        return floor is not null && CompareVersions(floor, configured.Manifest.Version) > 0 ? floor : null;
    }

    private static string? TryRestore(ModelPackage configured, AppliedUpdates applied, AppliedUpdates.State state, DeviceTrust trust, EngineChoice choice,
        out IClassifierProvider? provider, out string source, out string? cardFault)
    {
        provider = null;
        source = "";
        cardFault = null;
        ModelPackage model = configured;
        string path = "", described = "";
        foreach (string sha in state.InOrder)
        {
            path = applied.PackagePath(sha);
            if (!TryVerify(File.ReadAllBytes(path), trust, out ModelPackage? update, out SignerRole signer, out string verdict)) return $"{path}: {verdict}";
            ModelManifest m = update!.Manifest;
            described = Describe(update);
            if (LineEndRefusal(update) is { } ends) return ends;
            if (m.Kind == PackageKind.Model)
            {
                if (m.ModelId != configured.Manifest.ModelId || CompareVersions(m.Version, configured.Manifest.Version) <= 0)
                    return $"{described} does not continue the configured {configured.Manifest.ModelId} {configured.Manifest.Version}";
                model = update;
            }
            else
            {
                if (signer == SignerRole.Learner && !IsLearnedLine(m.Version, model.Manifest.Version))
                    return $"{described}: learner-signed, but not on the learned line of {model.Manifest.ModelId} {model.Manifest.Version}";
                if (signer == SignerRole.Learner && ClinicalSettingsChanged(model.Manifest, m) is { } changed)
                    return $"{described}: learner-signed, but changes the clinical settings of {model.Manifest.ModelId} {model.Manifest.Version} ({changed})";
                if (CheckReadoutGolden(update) is { } failed) return failed;
                // A learned readout whose base is a learned version of the model below: the learned readouts between
                // were superseded by it and pruned (WithoutLearnedTail). It replaces the whole head and readout, so
                // applied over the model their run began on it gives the model it gave over them.
                bool overPruned = signer == SignerRole.Learner && m.BaseModelId == model.Manifest.ModelId
                    && m.BaseModelVersion is { } baseVersion && baseVersion != model.Manifest.Version
                    && IsLearnedLine(baseVersion, model.Manifest.Version) && CompareVersions(m.Version, baseVersion) > 0;
                try { model = overPruned ? ReadoutUpdates.ApplyOverEarlierBase(model, update) : ReadoutUpdates.Apply(model, update); }
                catch (PackageFormatException e) { return $"{described}: {e.Message}"; }
            }
        }
        if (!ClassifierFactory.TryCreateCheckedAtStart(model, path, choice, out provider, out cardFault, out string failure)) return failure;
        source = $"applied update: {described} ({path})";
        return null;
    }

    /// <summary>
    /// The applied package whose content this update's is, or null. ECDSA draws a new signature each time a package is
    /// signed, so a release signed again (a fleet tool that signs as it sends) has other bytes and another SHA-256 than
    /// the one applied; it was refused as "already running, from a different package" (or, for a readout, as made for
    /// the base it replaced) where it is the update already applied. The content checksum leaves the signature out.
    /// </summary>
    private string? SignedAgain(ModelPackage update, AppliedUpdates.State state)
    {
        foreach (string applied in state.InOrder)
        {
            string path = _applied.PackagePath(applied);
            try
            {
                if (PackageReader.Load(path).ContentSha256 == update.ContentSha256) return path;
            }
            catch (PackageFormatException) { }   // gone or damaged since the start: not this one
        }
        return null;
    }

    private static bool TryVerify(byte[] payload, DeviceTrust trust, out ModelPackage? package, out SignerRole signer, out string verdict)
    {
        package = null;
        signer = default;
        TrustStore store;
        string? problem;
        try { store = trust.Load(out problem); }
        catch (Exception e) when (e is KeyFileException or IOException or UnauthorizedAccessException)
        {
            verdict = $"no usable trust store ({e.Message})";
            return false;
        }
        VerificationResult result = PackageVerifier.Verify(payload, store);
        verdict = result.IsValid || problem is null ? result.Reason : $"no usable trust store ({problem}): {result.Reason}";
        package = result.Package;
        if (result.Signer is { } key) signer = key.Role;
        return result.IsValid;
    }

    internal static string Describe(ModelPackage p) => p.Manifest.Kind == PackageKind.ReadoutUpdate
        ? $"readout update {p.Manifest.ModelId} {p.Manifest.Version} (for {p.Manifest.BaseModelId} {p.Manifest.BaseModelVersion})"
        : $"model {p.Manifest.ModelId} {p.Manifest.Version}";

    /// <summary>
    /// Semantic-versioning precedence (semver.org, §11): the dot-separated core compares part by part, numerically
    /// when both parts are numbers; a pre-release (after the first '-') ranks below its release (1.0.1-rc.1 &lt; 1.0.1),
    /// and pre-releases compare identifier by identifier, numbers numerically and below text; build metadata (after
    /// '+') is ignored. Where one list of parts is a prefix of the other, the shorter ranks lower (1.0 &lt; 1.0.1).
    /// One exception: a version learned on the device under a pre-release P (<c>P.learned.N</c>,
    /// <see cref="TryLearnedVersion"/>) ranks just above P and below every other version above P, so learned versions
    /// of one P compare by N and the vendor's next pre-release is always newer (1.0.0-alpha &lt;
    /// 1.0.0-alpha.learned.1 &lt; 1.0.0-alpha.learned.2 &lt; 1.0.0-alpha.1 &lt; 1.0.0-alpha.beta). By §11 alone, numbers
    /// rank below text and <c>beta</c> below <c>learned</c>, and both of those vendor releases were refused as downgrades
    /// of the learned version; no identifier semver ranks below every possible next one, so the marker stays and the
    /// order treats it. Learned versions under a release (1.0.0.N) need no exception: the vendor's next release bumps
    /// one of the three core parts.
    /// </summary>
    public static int CompareVersions(string a, string b)
    {
        var (overA, counterA) = LearnedOver(a);
        var (overB, counterB) = LearnedOver(b);
        int order = ComparePrecedence(overA, overB);
        return order != 0 ? order : Math.Sign(counterA.CompareTo(counterB));
    }

    /// <summary>
    /// For a version learned under a pre-release (<c>P.learned.N</c>, P not empty): P and N; for any other version:
    /// itself and −1, so that it ranks below everything learned over it.
    /// </summary>
    private static (string Over, long Counter) LearnedOver(string version)
    {
        var (core, pre) = SplitVersion(version);
        if (pre is null) return (version, -1);
        string[] ids = pre.Split('.');
        return ids.Length >= 3 && ids[^2] == "learned" && long.TryParse(ids[^1], NumberStyles.None, CultureInfo.InvariantCulture, out long n)
            ? ($"{core}-{string.Join('.', ids[..^2])}", n)
            : (version, -1);
    }

    private static int ComparePrecedence(string a, string b)
    {
        var (coreA, preA) = SplitVersion(a);
        var (coreB, preB) = SplitVersion(b);
        int order = CompareParts(coreA, coreB);
        if (order != 0) return order;
        if (preA is null || preB is null) return preA is null ? (preB is null ? 0 : 1) : -1;
        return CompareParts(preA, preB);
    }

    /// <summary>
    /// The version of a readout learned on the device on top of <paramref name="running"/>: newer than it and older than
    /// the vendor's next release, which bumps a part of the three-part core (1.0.0 → 1.0.1, 1.1.0, 2.0.0), so that a
    /// vendor release still counts as newer than any readout the device learned. Learned versions carry a fourth core
    /// part: 1.0.0 → 1.0.0.1 → 1.0.0.2 (1.0.0 &lt; 1.0.0.1 &lt; 1.0.0.2 &lt; 1.0.1); a shorter core is padded
    /// (1.0 → 1.0.0.1). Under a pre-release the counter goes after a <c>learned</c> identifier instead (1.0.1-rc.1 →
    /// 1.0.1-rc.1.learned.1, below 1.0.1-rc.1.1, 1.0.1-rc.2 and 1.0.1: <see cref="CompareVersions"/> ranks it below
    /// every version above its pre-release), since a fourth core part would rank above the release.
    /// Build metadata is dropped (it does not order).
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="running"/> ends its learned line (<see cref="TryLearnedVersion"/>).</exception>
    public static string LearnedVersion(string running) => TryLearnedVersion(running, out string? learned) ? learned
        : throw new ArgumentException($"version {running} ends its learned line: its counter is {long.MaxValue}, the largest there is", nameof(running));

    /// <summary>
    /// <see cref="LearnedVersion"/>, or false when <paramref name="running"/> has no learned version above it: its
    /// counter (the fourth core part, or the number after <c>learned</c>) is <see cref="long.MaxValue"/>, and one more
    /// is no version of the line (the increment wrapped to <c>-9223372036854775808</c>, whose '-' reads as a pre-release).
    /// </summary>
    public static bool TryLearnedVersion(string running, [NotNullWhen(true)] out string? learned)
    {
        learned = null;
        var (core, pre) = SplitVersion(running);
        if (pre is null)
        {
            var parts = core.Split('.').ToList();
            if (parts.Count >= 4 && long.TryParse(parts[^1], NumberStyles.None, CultureInfo.InvariantCulture, out long n))
            {
                if (n == long.MaxValue) return false;
                parts[^1] = (n + 1).ToString(CultureInfo.InvariantCulture);
            }
            else
            {
                while (parts.Count < 3) parts.Add("0");
                parts.Add("1");
            }
            learned = string.Join('.', parts);
            return true;
        }
        string[] ids = pre.Split('.');
        if (ids.Length >= 2 && ids[^2] == "learned" && long.TryParse(ids[^1], NumberStyles.None, CultureInfo.InvariantCulture, out long m))
        {
            if (m == long.MaxValue) return false;
            learned = $"{core}-{string.Join('.', ids[..^1])}.{(m + 1).ToString(CultureInfo.InvariantCulture)}";
            return true;
        }
        learned = $"{core}-{pre}.learned.1";
        return true;
    }

    /// <summary>
    /// Whether <paramref name="version"/> ends its learned line: it has no learned version above it
    /// (<see cref="TryLearnedVersion"/>: its counter is <see cref="long.MaxValue"/>), or the one above it has none (a
    /// counter of <see cref="long.MaxValue"/> − 1). Refusing only the first let a package one below in: applied, the
    /// device learned a readout at the largest counter, which was refused after a whole round of training, at every
    /// round until the vendor's next release. The device's learning stops before a version that ends the line
    /// (<c>ReadoutLearning</c>), so the last version it reaches has a counter of <see cref="long.MaxValue"/> − 2. A
    /// release of three core parts, or any version off the line, never ends it.
    /// </summary>
    public static bool EndsLearnedLine(string version)
        => !TryLearnedVersion(version, out string? learned) || !TryLearnedVersion(learned, out _);

    /// <summary>
    /// Why a package may not run on this device, or null: a version that ends its learned line
    /// (<see cref="EndsLearnedLine(string)"/>) would leave the device's learning nothing to give above it until the
    /// vendor's next release. A learner key may sign such a version (another device's, trusted here, say), so it is
    /// refused whoever signed it.
    /// </summary>
    private static string? LineEndRefusal(ModelPackage package) => !EndsLearnedLine(package.Manifest.Version) ? null
        : $"{Describe(package)}: version {package.Manifest.Version} leaves no learned version above it that learning could go on from " +
          $"(its counter is {long.MaxValue - 1} or more; the largest there is, {long.MaxValue}, has no successor), so this device could learn no readout over it";

    /// <summary>
    /// The clinical settings of <paramref name="model"/>'s calibration that a learner-signed readout update changes, in
    /// one line, or null when it keeps them all. The referral threshold, the fallback's τ and the saliency flatness
    /// threshold are fitted by the vendor on validation for the whole model (the referral threshold for 90 % sensitivity
    /// with 95 % confidence); a readout learned on the device keeps them (<c>ReadoutLearner</c> writes the model's
    /// calibration). A learner key is one device's, so a learned readout that changed them, e.g. a referral threshold of
    /// 1 that no image reaches, is refused rather than trusted to switch referrals off.
    /// </summary>
    public static string? ClinicalSettingsChanged(ModelManifest model, ModelManifest update)
    {
        Calibration was = model.Calibration, now = update.Calibration;
        var changed = new List<string>();
        if (now.ReferralThreshold != was.ReferralThreshold) changed.Add(Change("referral threshold", was.ReferralThreshold, now.ReferralThreshold));
        if (now.TilingTau != was.TilingTau) changed.Add(Change("fallback τ", was.TilingTau, now.TilingTau));
        if (now.SaliencyFlatCv != was.SaliencyFlatCv) changed.Add(Change("saliency flatness threshold", was.SaliencyFlatCv, now.SaliencyFlatCv));
        return changed.Count == 0 ? null : string.Join(", ", changed);

        static string Change(string what, double from, double to) =>
            string.Create(CultureInfo.InvariantCulture, $"{what} {from:R} -> {to:R}");
    }

    /// <summary>
    /// Whether <paramref name="version"/> is on the line <see cref="LearnedVersion"/> gives above
    /// <paramref name="running"/>: the same three-part core and a fourth part (1.0.0 → 1.0.0.N), or under a
    /// pre-release the same pre-release and a <c>learned.N</c> suffix. Such a version always ranks below the vendor's
    /// next release, so a learner key (one device's) cannot give a version that makes the vendor's updates downgrades.
    /// </summary>
    public static bool IsLearnedLine(string version, string running)
    {
        var (core, pre) = SplitVersion(version);
        var (runningCore, runningPre) = SplitVersion(running);
        if (runningPre is null)
        {
            if (pre is not null) return false;
            string[] parts = core.Split('.'), base3 = [.. runningCore.Split('.').Concat(["0", "0", "0"]).Take(3)];
            return parts.Length == 4 && parts[..3].SequenceEqual(base3) && IsNumber(parts[3]);
        }
        if (pre is null || core != runningCore) return false;
        string[] ids = runningPre.Split('.');
        string releaseLine = ids.Length >= 2 && ids[^2] == "learned" ? string.Join('.', ids[..^2]) : runningPre;
        return pre.StartsWith(releaseLine + ".learned.", StringComparison.Ordinal) && IsNumber(pre[(releaseLine.Length + ".learned.".Length)..]);
    }

    private static bool IsNumber(string s) => s.Length > 0 && long.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out _);

    private static (string Core, string? PreRelease) SplitVersion(string v)
    {
        int plus = v.IndexOf('+');
        if (plus >= 0) v = v[..plus];
        int dash = v.IndexOf('-');
        return dash < 0 ? (v, null) : (v[..dash], v[(dash + 1)..]);
    }

    private static int CompareParts(string a, string b)
    {
        string[] x = a.Split('.'), y = b.Split('.');
        for (int i = 0; i < Math.Min(x.Length, y.Length); i++)
        {
            bool numX = long.TryParse(x[i], NumberStyles.None, CultureInfo.InvariantCulture, out long p);
            bool numY = long.TryParse(y[i], NumberStyles.None, CultureInfo.InvariantCulture, out long q);
            int c = numX && numY ? p.CompareTo(q) : numX ? -1 : numY ? 1 : string.CompareOrdinal(x[i], y[i]);
            if (c != 0) return Math.Sign(c);
        }
        return x.Length.CompareTo(y.Length);
    }
}

/// <summary>
/// The model the daemon starts with, the applied state it was built from, and why applied updates were not used (null
/// when they were, or there were none); when they were not, <paramref name="VersionFloor"/> is the highest version
/// among them that a vendor can send again (not a learned readout's), below which updates are refused until one is applied.
/// </summary>
public sealed record ModelAtStart(ActiveModel Active, AppliedUpdates.State Applied, string? Problem, string? VersionFloor = null);
