using System.Security.Cryptography;
using Microsoft.Extensions.Logging;
using QanaEdge.Daemon.Capture;
using QanaEdge.Daemon.Hosting;
using QanaEdge.Daemon.Storage;
using QanaEdge.Daemon.Updates;

namespace QanaEdge.Daemon.Messaging;

/// <summary>
/// Messages the daemon subscribes to: clinician feedback (validated, stored, and the readout learner told), update packages (applied or refused
/// with a reason by <see cref="ModelUpdates"/>, and recorded in the store's update log), and camera capture commands.
/// A label, or an update package, that cannot be stored on a full or failing disk is left unacknowledged and
/// <paramref name="heldBack"/> is called with what was held back, which has the link renew its session later so that
/// the broker sends the message again.
/// <para>
/// Labels and capture commands are handled on the link's receive path, which they leave at once. An update package is
/// handed to one worker of its own (a bounded queue, one package at a time, in the order they came) and acknowledged
/// through <paramref name="acknowledge"/> only once its outcome is recorded: applying one loads, checks and stores a model
/// and may take long, and on the receive path every message behind it (a clinician's label, a capture command) waited
/// for it, for ever behind one that hung. One that takes longer than <paramref name="applyBound"/> is logged as such
/// (once), and a stop waits for it <see cref="StopWait"/> at most (or the bound, if shorter: the unit's TimeoutStopSec
/// is 30 s, after which systemd kills the daemon); a package queued but not begun at a stop is not acknowledged, and
/// the broker sends it again.
/// </para>
/// </summary>
public sealed class InboundHandler(Topics topics, ResultStore store, Func<CameraTrigger?> camera, ModelUpdates updates, Action labelled, Action<string> heldBack,
    ILogger<InboundHandler> log, Func<InboundMessage, Task<bool>> acknowledge, TimeSpan applyBound) : IAsyncDisposable
{
    /// <summary>The longest a stop waits for the package being applied.</summary>
    public static readonly TimeSpan StopWait = TimeSpan.FromSeconds(10);

    /// <summary>Update packages waiting for the worker; one more is held back (not acknowledged) for the broker to send again.</summary>
    public const int MaxQueuedUpdates = 32;

    private readonly System.Threading.Channels.Channel<InboundMessage> _queuedUpdates =
        System.Threading.Channels.Channel.CreateBounded<InboundMessage>(new System.Threading.Channels.BoundedChannelOptions(MaxQueuedUpdates) { SingleReader = true });
    private readonly CancellationTokenSource _stop = new();
    private Task? _worker;
    // The package the worker is applying, for a stop that cannot wait for it to say which.
    private Task? _applying;
    private string? _applyingSha;

    // Capture commands that found no camera. Without one nothing changes until a restart, so one warning per command
    // let a flood of them write the journal as fast as it came: the 1st, 10th, 100th ... are logged.
    private long _withoutCamera;

    // Labels refused, and labels of results this device does not have, since the last label of a result of this device.
    private long _refused, _unknown;

    // Update packages refused or already applied since the last one applied.
    private long _notApplied;

    // Update packages held back because the queue was full.
    private long _notQueued;

    /// <summary>
    /// Labels of results this device does not have that are kept (a result of another device, or of this one before
    /// its store was lost): enough to see what was sent, while a publisher of made-up result ids cannot fill the disk.
    /// A label of a result of this device is always kept.
    /// </summary>
    public const int MaxUnknownLabels = 1000;

    /// <summary>Starts the worker that applies update packages.</summary>
    public void Start() => _worker = Task.Run(() => ApplyQueuedAsync(_stop.Token));

    public void Handle(InboundMessage message)
    {
        string topic = message.Topic;
        byte[] payload = message.Payload;
        if (topic == topics.Feedback) HandleFeedback(payload);
        else if (topic == topics.Updates || topic == Topics.FleetUpdates)
        {
            message.Defer();
            if (!_queuedUpdates.Writer.TryWrite(message))
            {
                // Not acknowledged: the broker keeps it and sends it again on the next session, which heldBack brings about.
                // Logged at the 1st, 10th, 100th ...: packages sent at QoS 0 are not held back by the broker's in-flight
                // limit, and anyone who may publish on an updates topic could otherwise write the journal as fast as they send.
                if (Interlocked.Increment(ref _notQueued) is var notQueued && Logging.IsReported(notQueued))
                    log.LogError("Update package on {Topic} ({Bytes} bytes) held back: {Max} packages wait to be applied already (or the daemon is stopping); not acknowledged, the broker will send it again ({Count} so far; reported at 1, 10, 100 ...)",
                        topic, payload.Length, MaxQueuedUpdates, notQueued);
                heldBack("an update package could not be queued");
            }
        }
        else if (topic == topics.Capture)
        {
            CameraTrigger? trigger = camera();
            if (trigger is not null) _ = trigger.TriggerAsync("mqtt");
            else if (Interlocked.Increment(ref _withoutCamera) is var count && Logging.IsReported(count))
                log.LogWarning("Capture command on {Topic} ignored: no camera (Qana:Camera:Enabled is false, or the camera could not be opened: see the status) ({Count} so far; reported at 1, 10, 100 ...)",
                    topic, count);
        }
    }

    private void HandleFeedback(byte[] payload)
    {
        if (!Payloads.TryParseFeedback(payload, out string resultId, out string label, out string? clinician, out string? note, out string? lesionId, out string error))
        {
            // Acknowledged (returning is the PUBACK): the broker would only send it again. Logged at the 1st, 10th,
            // 100th ... in a row, since anyone who may publish could otherwise write the journal as fast as they send.
            if (Interlocked.Increment(ref _refused) is var refused && Logging.IsReported(refused))
                log.LogWarning("Feedback refused: {Error} ({Count} in a row; reported at 1, 10, 100 ...)", error, refused);
            return;
        }
        LabelKept kept;
        try { kept = store.StoreLabel(resultId, label, clinician, note, System.Text.Encoding.UTF8.GetString(payload), lesionId, MaxUnknownLabels); }
        catch (Exception e) when (ResultStore.IsStorageFailure(e))
        {
            // Rethrown so that MQTTnet sends no PUBACK: the broker keeps the label and sends it again on the next session,
            // which heldBack brings about.
            log.LogError("Feedback for result {ResultId} could not be stored ({Error}): not acknowledged, the broker will send it again", resultId, e.Message);
            heldBack("a clinician label could not be stored");
            throw;
        }
        if (kept == LabelKept.Known)
        {
            log.LogInformation("Feedback stored: result {ResultId} labelled {Label}", resultId, label);
            // The runs end here; each one of them is counted in this line, whether or not it was reported on its own.
            long refusedRun = Interlocked.Exchange(ref _refused, 0), unknownRun = Interlocked.Exchange(ref _unknown, 0);
            if (refusedRun > 1 || unknownRun > 1)
                log.LogWarning("Since the previous label of a result of this device: {Refused} labels refused, {Unknown} labels of results this device does not have",
                    refusedRun, unknownRun);
            labelled();
        }
        else if (Interlocked.Increment(ref _unknown) is var unknown && Logging.IsReported(unknown))
        {
            if (kept == LabelKept.Unknown)
                log.LogWarning("Feedback stored for unknown result {ResultId} (label {Label}): not a result of this device ({Count} in a row; reported at 1, 10, 100 ...)",
                    resultId, label, unknown);
            else
                log.LogWarning("Feedback for unknown result {ResultId} (label {Label}) not kept: {Max} labels of results this device does not have are stored already ({Count} in a row; reported at 1, 10, 100 ...)",
                    resultId, label, MaxUnknownLabels, unknown);
        }
    }

    private async Task ApplyQueuedAsync(CancellationToken ct)
    {
        try
        {
            while (await _queuedUpdates.Reader.WaitToReadAsync(ct).ConfigureAwait(false))
            {
                if (!_queuedUpdates.Reader.TryRead(out InboundMessage? message)) continue;
                string sha = Convert.ToHexStringLower(SHA256.HashData(message.Payload));
                Task apply = Task.Run(() => HandleUpdate(message.Topic, message.Payload, sha), CancellationToken.None);
                Volatile.Write(ref _applyingSha, sha);
                Volatile.Write(ref _applying, apply);
                try
                {
                    try { await apply.WaitAsync(applyBound, ct).ConfigureAwait(false); }
                    catch (TimeoutException)
                    {
                        log.LogError("Update package on {Topic} (sha256 {Sha}) still being applied after {Seconds} s; later packages wait for it, and it is acknowledged once it ends",
                            message.Topic, sha, applyBound.TotalSeconds);
                        await apply.WaitAsync(ct).ConfigureAwait(false);
                    }
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    // Held back (not stored, or its outcome not recorded: HandleUpdate logged why): not acknowledged.
                    if (!ResultStore.IsStorageFailure(e))
                        log.LogError(e, "Update package on {Topic} (sha256 {Sha}) failed: not acknowledged, the broker will send it again", message.Topic, sha);
                    continue;
                }
                await acknowledge(message).ConfigureAwait(false);
                Volatile.Write(ref _applying, null);
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested) { }
    }

    /// <summary>
    /// Stops the worker: a package being applied is waited for up to <see cref="StopWait"/> or the apply bound (an update half done is no worse
    /// than a kill: the state folder holds the old state or the new), one queued and not begun is left unacknowledged.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        _queuedUpdates.Writer.TryComplete();
        await _stop.CancelAsync().ConfigureAwait(false);
        if (_worker is not null) await _worker.ConfigureAwait(false);
        if (Volatile.Read(ref _applying) is { IsCompleted: false } apply)
        {
            TimeSpan wait = applyBound < StopWait ? applyBound : StopWait;
            try { await apply.WaitAsync(wait).ConfigureAwait(false); }
            catch (TimeoutException)
            {
                log.LogError("Stopping with update package {Sha} still being applied after {Seconds} s more: not acknowledged, the broker will send it again",
                    Volatile.Read(ref _applyingSha), wait.TotalSeconds);
            }
            catch (Exception e) when (e is not OutOfMemoryException) { }   // held back, and logged, by HandleUpdate
        }
        int left = 0;
        while (_queuedUpdates.Reader.TryRead(out _)) left++;
        if (left > 0) log.LogWarning("Stopping with {Count} update packages not applied yet: not acknowledged, the broker will send them again", left);
        _stop.Dispose();
    }

    private void HandleUpdate(string topic, byte[] payload, string sha)
    {
        var (outcome, reason) = updates.Handle(payload, sha);
        try { store.LogUpdate(topic, sha, payload.Length, outcome, reason); }
        catch (Exception e) when (ResultStore.IsStorageFailure(e))
        {
            // Every update's outcome is on record, so one whose entry cannot be written is not acknowledged either; sent
            // again, an applied one is reported as already applied and recorded then.
            log.LogError("Update package on {Topic} (sha256 {Sha}) {Outcome} ({Reason}) but its update-log entry could not be stored ({Error}): not acknowledged, the broker will send it again",
                topic, sha, outcome, reason, e.Message);
            heldBack("an update package could not be recorded");
            throw;
        }
        if (outcome == ModelUpdates.NotStored)
        {
            log.LogError("Update package on {Topic} (sha256 {Sha}) held back: {Reason}; not acknowledged, the broker will send it again", topic, sha, reason);
            heldBack("an update package could not be stored");
            throw new IOException($"update package {sha} not stored: {reason}");
        }
        if (outcome == ModelUpdates.Applied)
        {
            Interlocked.Exchange(ref _notApplied, 0);
            log.LogWarning("Update package on {Topic} ({Bytes} bytes, sha256 {Sha}) {Outcome}: {Reason}", topic, payload.Length, sha, outcome, reason);
        }
        // Each one is in the update log; the journal gets the 1st, 10th, 100th ... in a row, since anyone who may publish
        // on an updates topic (or replay a package already applied) could otherwise write it as fast as they send.
        else if (Interlocked.Increment(ref _notApplied) is var notApplied && Logging.IsReported(notApplied))
            log.LogWarning("Update package on {Topic} ({Bytes} bytes, sha256 {Sha}) {Outcome}: {Reason} ({Count} not applied in a row; reported at 1, 10, 100 ...; each one is in the update log)",
                topic, payload.Length, sha, outcome, reason, notApplied);
    }
}
