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
/// </summary>
public sealed class InboundHandler(Topics topics, ResultStore store, Func<CameraTrigger?> camera, ModelUpdates updates, Action labelled, Action<string> heldBack,
    ILogger<InboundHandler> log)
{
    // Capture commands that found no camera. Without one nothing changes until a restart, so one warning per command
    // let a flood of them write the journal as fast as it came: the 1st, 10th, 100th ... are logged.
    private long _withoutCamera;

    // Labels refused, and labels of results this device does not have, since the last label of a result of this device.
    private long _refused, _unknown;

    // Update packages refused or already applied since the last one applied.
    private long _notApplied;

    /// <summary>
    /// Labels of results this device does not have that are kept (a result of another device, or of this one before
    /// its store was lost): enough to see what was sent, while a publisher of made-up result ids cannot fill the disk.
    /// A label of a result of this device is always kept.
    /// </summary>
    public const int MaxUnknownLabels = 1000;

    public void Handle(string topic, byte[] payload)
    {
        if (topic == topics.Feedback) HandleFeedback(payload);
        else if (topic == topics.Updates || topic == Topics.FleetUpdates) HandleUpdate(topic, payload);
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

    private void HandleUpdate(string topic, byte[] payload)
    {
        string sha = Convert.ToHexStringLower(SHA256.HashData(payload));
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
