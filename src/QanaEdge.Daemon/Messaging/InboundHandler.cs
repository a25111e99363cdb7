using System.Security.Cryptography;
using Microsoft.Extensions.Logging;
using QanaEdge.Daemon.Capture;
using QanaEdge.Daemon.Storage;
using QanaEdge.Model.Packaging;

namespace QanaEdge.Daemon.Messaging;

/// <summary>
/// Messages the daemon subscribes to: clinician feedback (validated and stored), update packages (checked and
/// refused with a reason: see <see cref="CheckUpdate"/>), and camera capture commands.
/// </summary>
public sealed class InboundHandler(Topics topics, ResultStore store, Func<CameraTrigger?> camera, string trustDir, string updatesDir, ILogger<InboundHandler> log)
{
    public void Handle(string topic, byte[] payload)
    {
        if (topic == topics.Feedback) HandleFeedback(payload);
        else if (topic == topics.Updates || topic == Topics.FleetUpdates) HandleUpdate(topic, payload);
        else if (topic == topics.Capture)
        {
            CameraTrigger? trigger = camera();
            if (trigger is null) log.LogWarning("Capture command on {Topic} ignored: no camera configured (Qana:Camera:Enabled)", topic);
            else _ = trigger.TriggerAsync("mqtt");
        }
    }

    private void HandleFeedback(byte[] payload)
    {
        if (!Payloads.TryParseFeedback(payload, out string resultId, out string label, out string? clinician, out string? note, out string error))
        {
            log.LogWarning("Feedback refused: {Error}", error);
            return;
        }
        bool known = store.AddFeedback(resultId, label, clinician, note, System.Text.Encoding.UTF8.GetString(payload));
        if (known) log.LogInformation("Feedback stored: result {ResultId} labelled {Label}", resultId, label);
        else log.LogWarning("Feedback stored for unknown result {ResultId} (label {Label}): not a result of this device", resultId, label);
    }

    private void HandleUpdate(string topic, byte[] payload)
    {
        string sha = Convert.ToHexStringLower(SHA256.HashData(payload));
        var (outcome, reason) = CheckUpdate(payload, trustDir, updatesDir, sha);
        store.LogUpdate(topic, sha, payload.Length, outcome, reason);
        if (outcome == "refused")
            log.LogWarning("Update package on {Topic} ({Bytes} bytes, sha256 {Sha}) refused: {Reason}", topic, payload.Length, sha, reason);
        else
            log.LogWarning("Update package on {Topic} ({Bytes} bytes, sha256 {Sha}) {Outcome}: {Reason}", topic, payload.Length, sha, outcome, reason);
    }

    /// <summary>
    /// Verifies an update with the model's PackageVerifier against the trusted keys in <paramref name="trustDir"/>:
    /// it must load, be signed by a trusted key, match its signature, and the signer's role must be allowed to sign
    /// its kind. A refused package gets the verifier's one-line reason. A verified package is kept in
    /// <paramref name="updatesDir"/> but not applied: hot-swapping the model or readout is not part of this build.
    /// </summary>
    public static (string Outcome, string Reason) CheckUpdate(byte[] payload, string trustDir, string updatesDir, string sha)
    {
        if (payload.Length == 0) return ("refused", "empty message");
        TrustStore trust;
        try { trust = TrustStore.Load(trustDir); }
        catch (KeyFileException e) { return ("refused", $"no usable trust store ({e.Message})"); }
        catch (IOException e) { return ("refused", $"no usable trust store ({e.Message})"); }
        VerificationResult result = PackageVerifier.Verify(payload, trust);
        if (!result.IsValid) return ("refused", $"{result.Status}: {result.Reason}");
        try
        {
            Directory.CreateDirectory(updatesDir);
            string path = Path.Combine(updatesDir, sha + ".qana");
            File.WriteAllBytes(path, payload);
            return ("verified-not-applied", $"signature valid ({result.Reason}); stored as {path}; applying updates on the device is not part of this build");
        }
        catch (IOException e) { return ("verified-not-applied", $"signature valid but not stored: {e.Message}"); }
    }
}
