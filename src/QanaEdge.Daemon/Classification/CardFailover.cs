using Microsoft.Extensions.Logging;
using QanaEdge.Akida;

namespace QanaEdge.Daemon.Classification;

/// <summary>
/// What happens when the Akida card fails while classifying (enqueue or fetch answers with an error: the card stopped
/// answering, lost its program after a reset, or a fetch timed out): the running model moves to the managed integer
/// engine, between images, and the worker classifies the image in hand again there. The managed engine's logits are
/// the card's bit for bit, so results do not change, only the power drawn. Before, every capture after such a fault
/// was quarantined as a classifier error.
/// <para>
/// The card is then tried again in the background, after <c>retryAfter</c> and each failed try after twice the wait
/// before (at most an hour): it is opened, programmed with the running model and must reproduce the package's golden
/// vectors (or, for a package without any, such as one patched by a readout update, vectors recorded from seeded inputs
/// on the reference kernels) before the model moves back, so a card that comes back from a transient fault (a reset, a bus error) saves
/// its power again without a restart. A card that fails again soon after it came back starts its next wait where the
/// last one ended, so a flapping card is tried less and less often. An update applied meanwhile runs on the managed
/// engine (<see cref="ActiveModel.CardFault"/>), and the card's return takes it.
/// </para>
/// <para>
/// A try whose program the card refuses for the model itself (<see cref="QanaEdge.Akida.AkidaException.RefusesTheModel"/>:
/// the chip's constraints or the program's format, not a fault) ends the tries: the same model would be refused again
/// at every try, hourly, for ever. The model stays on the managed engine, the log says so once, and the status's
/// engine reason names the refusal (<see cref="Refusal"/>). A model update applied afterwards starts the tries again
/// (<see cref="ModelReplaced"/>: a new model may fit), and so does a restart. Faults, a busy card, state errors and
/// vectors the card does not reproduce keep the growing waits.
/// </para>
/// </summary>
public sealed class CardFailover(ActiveModel model, EngineChoice choice, TimeSpan retryAfter, ILogger log, CancellationToken stopping)
{
    /// <summary>The longest wait between two tries.</summary>
    public static readonly TimeSpan MaxRetryAfter = TimeSpan.FromHours(1);

    private readonly Lock _backoff = new();
    private readonly TimeSpan _firstWait = retryAfter;
    private TimeSpan _nextWait = retryAfter;
    // Monotonic: a board without a real-time clock steps its wall clock when it first syncs.
    private long _returnedMs = long.MinValue / 2;
    private Task _retries = Task.CompletedTask;
    private string? _refusal;

    /// <summary>
    /// The card's refusal of the running model that ended the tries (the card's own message), while that model runs;
    /// null while the card is tried, back, or was never left.
    /// </summary>
    public string? Refusal
    {
        get { lock (_backoff) return _refusal; }
    }

    /// <summary>True for a failure of the card itself, as opposed to the image or the host side.</summary>
    public static bool IsCardFault(Exception e) => e is AkidaException;

    /// <summary>
    /// Moves the model off the card if the classifier of <paramref name="generation"/> that saw <paramref name="fault"/>
    /// is still the current one; when another worker or an update got there first, nothing changes. The caller then
    /// takes a classifier of the current generation. Call it outside <see cref="ActiveModel.EnterImage"/>.
    /// </summary>
    /// <exception cref="ModelUnavailableException">The model cannot run on the managed engine either.</exception>
    public void Leave(int generation, Exception fault)
    {
        bool left;
        // The card gate: an update in progress has read the model on the card and must not see it move under it.
        lock (model.CardGate)
        {
            left = model.Swap(old =>
            {
                if (model.Generation != generation || !old.HoldsDevice) return (old, model.Source, false);
                log.LogError("The Akida card failed while classifying ({Error}): model {Model} {Version} moves to the managed engine",
                    fault.Message, old.ModelId, old.ModelVersion);
                // Built before the old provider lets the card go (Swap disposes it): if this throws, nothing has changed.
                IClassifierProvider managed = ClassifierFactory.Create(old.Package, old.PackagePath, ClassifierFactory.AfterCardFault(choice, fault.Message));
                return (managed, MarkFault(model.Source, fault.Message), true);
            });
        }
        if (!left) return;
        ScheduleTries();
    }

    /// <summary>
    /// For a swap that has itself moved the model off the card (an update whose program failed, after which the card
    /// would not take the old model back either): marks the fault as <see cref="Leave"/> does and schedules the same
    /// tries. Before, nothing tried the card again until the next update or a restart. Call inside that swap, with
    /// <see cref="ActiveModel.CardGate"/> held (the first try waits for it); returns the source to give the model.
    /// </summary>
    public string Left(string source, string why)
    {
        string marked = MarkFault(source, why);
        ScheduleTries();
        return marked;
    }

    /// <summary>
    /// The card failed its check at start (<see cref="ClassifierFactory.CreateAtStart"/>), so the model started on the
    /// managed engine with <see cref="ActiveModel.CardFault"/> set and its source marked (<see cref="MarkedSource"/>):
    /// logs it and schedules the same tries as after a fault while classifying. Before, a start did not check the card
    /// at all.
    /// </summary>
    public void FailedAtStart()
    {
        if (model.CardFault is not { } why) return;
        log.LogError("The Akida card did not pass its check at start ({Error}): model {Model} {Version} runs on the managed engine",
            why, model.Provider.ModelId, model.Provider.ModelVersion);
        ScheduleTries();
    }

    /// <summary>Records the card's fault on the model and returns its source with the fault appended (<see cref="TryReturn"/> cuts it off again).</summary>
    private string MarkFault(string source, string why)
    {
        model.CardFault = why;
        return MarkedSource(source, why);
    }

    /// <summary><paramref name="source"/> with the card's fault appended, as the card's return expects to cut it off.</summary>
    public static string MarkedSource(string source, string why) => $"{source}{FaultMark}{why})";

    private void ScheduleTries()
    {
        TimeSpan wait;
        lock (_backoff)
        {
            // A card that ran an hour without fault since it came back starts again at the first wait.
            if (Environment.TickCount64 - _returnedMs >= (long)MaxRetryAfter.TotalMilliseconds) _nextWait = _firstWait;
            wait = _nextWait;
            _refusal = null;   // tries run again: the card has not refused the model they take
            log.LogWarning("The card will be tried again in {Seconds:0.#} s", wait.TotalSeconds);
            // One loop at a time: the model leaves only from the card, which a running loop has not given back yet.
            _retries = Task.Run(() => RetryAsync(wait));
        }
    }

    /// <summary>
    /// Waits for a try in progress to end (the daemon cancelled <c>stopping</c> first), so the model can be released.
    /// Without a stop, the task ends when the tries do: the model is back on the card, or the card refused it.
    /// </summary>
    public Task StopAsync()
    {
        lock (_backoff) return _retries;
    }

    /// <summary>
    /// An update has replaced the model while it is off the card (call with <see cref="ActiveModel.CardGate"/> held,
    /// after the swap). If the tries had ended because the card refused the previous model, they start again, at the
    /// first wait, for this one: a new model may fit. While tries run, they take the new model anyway.
    /// </summary>
    public void ModelReplaced()
    {
        lock (_backoff)
        {
            if (_refusal is null || model.CardFault is null) return;
            _refusal = null;
            // The refusal came from a card that answered; it says nothing about faults, so the waits start afresh.
            _nextWait = _firstWait;
        }
        log.LogWarning("Model {Model} {Version} replaces the one the Akida card refused: the card is tried again",
            model.Provider.ModelId, model.Provider.ModelVersion);
        ScheduleTries();
    }

    private enum TryOutcome { NothingToDo, Back, Failed, Refused }

    private const string FaultMark = "; the Akida card failed (";

    private async Task RetryAsync(TimeSpan wait)
    {
        try
        {
            while (true)
            {
                await Task.Delay(wait, stopping).ConfigureAwait(false);
                lock (_backoff) _nextWait = Min(wait * 2, MaxRetryAfter);
                TryOutcome outcome;
                string why;
                try { outcome = TryReturn(out why); }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    // The loop must outlive whatever a try throws, or the card would never be tried again.
                    (outcome, why) = (TryOutcome.Failed, $"{e.GetType().Name}: {e.Message}");
                }
                // Back, refused (said once, in the try), or nothing left to do: the tries end.
                if (outcome != TryOutcome.Failed) return;
                wait = Min(wait * 2, MaxRetryAfter);
                log.LogWarning("The Akida card is still not usable ({Error}); next try in {Seconds:0.#} s", why, wait.TotalSeconds);
            }
        }
        catch (OperationCanceledException) { }
    }

    /// <summary>
    /// One try to move the current model (the one the fault moved off the card, or an update applied since) onto
    /// the card: <see cref="TryOutcome.Back"/> when it moved, <see cref="TryOutcome.Failed"/> when the card could not
    /// take it this time (with <paramref name="why"/>), <see cref="TryOutcome.Refused"/> when the card refused the model
    /// itself, <see cref="TryOutcome.NothingToDo"/> when the model is not off the card any more or the daemon is stopping.
    /// </summary>
    private TryOutcome TryReturn(out string why)
    {
        why = "";
        lock (model.CardGate)
        {
            IClassifierProvider running = model.Provider;
            if (stopping.IsCancellationRequested || model.CardFault is null) return TryOutcome.NothingToDo;
            if (running.HoldsDevice)
            {
                model.CardFault = null;   // on the card already: nothing is off it
                return TryOutcome.NothingToDo;
            }
            // With the gate held nothing else opens or programs the card, and updates wait.
            if (!ClassifierFactory.TryOnCardChecked(running.Package, running.PackagePath, choice, out IClassifierProvider? onCard, out why,
                    out string? modelRefusal))
                return modelRefusal is null ? TryOutcome.Failed : StayOffTheCard(running, modelRefusal);
            bool installed = false;
            try
            {
                model.Swap(old =>
                {
                    if (!ReferenceEquals(old, running)) return (old, model.Source, false);
                    model.CardFault = null;
                    installed = true;
                    int mark = model.Source.LastIndexOf(FaultMark, StringComparison.Ordinal);
                    return (onCard, mark >= 0 ? model.Source[..mark] : model.Source, true);
                });
            }
            catch (ObjectDisposedException) when (!installed) { }   // the daemon stopped during the try
            if (!installed)
            {
                onCard.Dispose();
                why = "the model changed during the try";
                return stopping.IsCancellationRequested ? TryOutcome.NothingToDo : TryOutcome.Failed;
            }
            lock (_backoff) _returnedMs = Environment.TickCount64;
            log.LogWarning("The Akida card is back: model {Model} {Version} runs on {Engine} again, its check vectors reproduced there",
                onCard.ModelId, onCard.ModelVersion, onCard.EngineName);
            return TryOutcome.Back;
        }
    }

    /// <summary>
    /// The card refused <paramref name="running"/> itself: it stays on the managed engine, rebuilt with a reason that
    /// says so (the status shows it), and the tries end. Called by the try, with <see cref="ActiveModel.CardGate"/> held.
    /// </summary>
    private TryOutcome StayOffTheCard(IClassifierProvider running, string refusal)
    {
        IClassifierProvider managed = ClassifierFactory.Create(running.Package, running.PackagePath,
            ClassifierFactory.AfterCardRefusal(choice, running.Package, refusal));
        bool swapped = false;
        try
        {
            swapped = model.Swap(old => ReferenceEquals(old, running) ? (managed, model.Source, true) : (old, model.Source, false));
        }
        catch (ObjectDisposedException) { }   // the daemon stopped during the try
        if (!swapped)
        {
            managed.Dispose();
            return TryOutcome.NothingToDo;
        }
        lock (_backoff) _refusal = refusal;
        log.LogError("The Akida card refused model {Model} {Version} ({Refusal}): it stays on the managed engine, and the card will not be "
            + "tried again for this model (a model update or a restart tries it again)", running.ModelId, running.ModelVersion, refusal);
        return TryOutcome.Refused;
    }

    private static TimeSpan Min(TimeSpan a, TimeSpan b) => a < b ? a : b;
}
