using System.Buffers;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using QanaEdge.Model;

namespace QanaEdge.Daemon.Messaging;

/// <summary>MQTT topics of one device (DESIGN.md contracts).</summary>
public sealed class Topics(string deviceId)
{
    public string Status { get; } = $"qana/{deviceId}/status";
    public string Results { get; } = $"qana/{deviceId}/results";
    public string Power { get; } = $"qana/{deviceId}/power";
    public string Feedback { get; } = $"qana/{deviceId}/feedback";
    public string Updates { get; } = $"qana/{deviceId}/updates";
    /// <summary>Out: readout updates learned on this device from clinician labels, signed by its learner key (an addition to the DESIGN.md topic list).</summary>
    public string Readouts { get; } = $"qana/{deviceId}/readouts";
    public const string FleetUpdates = "qana/fleet/updates";
    /// <summary>In: any message triggers one camera capture (an addition to the DESIGN.md topic list).</summary>
    public string Capture { get; } = $"qana/{deviceId}/capture";
}

/// <summary>JSON payloads written with Utf8JsonWriter: no reflection serializer, so Native-AOT clean.</summary>
public static class Payloads
{
    /// <summary>
    /// result_id = first 128 bits of SHA-256(device id, image SHA-256, model id, model version), hex. The same image on the
    /// same device with the same model always gets the same id, so a redelivery (or a reprocessing after a crash)
    /// keeps its id; a new model gives a new result.
    /// </summary>
    public static string ResultId(string deviceId, string imageSha256, string modelId, string modelVersion)
    {
        byte[] text = Encoding.UTF8.GetBytes($"qana-result\n{deviceId}\n{imageSha256}\n{modelId}\n{modelVersion}");
        return Convert.ToHexStringLower(SHA256.HashData(text).AsSpan(0, 16));
    }

    public static byte[] Result(string resultId, string imageSha256, Classification.Classification c, string modelId,
        string modelVersion, double? energyMj, DateTime capturedAtUtc)
    {
        var buffer = new ArrayBufferWriter<byte>(512);
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteString("result_id", resultId);
            w.WriteString("image_sha256", imageSha256);
            w.WriteString("label", c.Label);
            w.WriteStartObject("probabilities");
            // Keyed by the package's own class names, as `qana classify --json` does: the probabilities are in the
            // package's class order, which the format does not fix, and naming them by the canonical order mislabelled
            // every probability of a package that lists its classes otherwise.
            IReadOnlyList<string> names = c.Classes ?? Classes.Codes;
            for (int k = 0; k < names.Count && k < c.Probabilities.Length; k++)
                w.WriteNumber(names[k], Math.Round(c.Probabilities[k], 6));
            w.WriteEndObject();
            w.WriteNumber("confidence", Math.Round(c.Confidence, 6));
            w.WriteBoolean("refer", c.Refer);
            w.WriteBoolean("tiled", c.Tiled);
            w.WriteBoolean("symmetrized", c.Symmetrized);
            w.WriteStartObject("model");
            w.WriteString("id", modelId);
            w.WriteString("version", modelVersion);
            w.WriteEndObject();
            w.WriteNumber("latency_ms", Math.Round(c.LatencyMs, 3));
            if (energyMj is double e) w.WriteNumber("energy_mj", Math.Round(e, 4)); else w.WriteNull("energy_mj");
            w.WriteString("captured_at", Timestamp(capturedAtUtc.ToUniversalTime()));
            w.WriteEndObject();
        }
        return buffer.WrittenSpan.ToArray();
    }

    public static byte[] Status(string state, string deviceId, string? engine, string? engineReason, string? modelId, string? modelVersion, string? daemonVersion,
        Capture.CameraState? camera = null, string? modelSource = null, Model.Packaging.TrustedKey? learner = null, int? deadLetters = null,
        string? powerError = null, Capture.RetentionSummary? retention = null, Storage.PruningSummary? store = null)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteString("state", state);
            w.WriteString("device_id", deviceId);
            if (engine is not null) w.WriteString("engine", engine);
            if (engineReason is not null) w.WriteString("engine_reason", engineReason);
            if (modelId is not null)
            {
                w.WriteStartObject("model");
                w.WriteString("id", modelId);
                w.WriteString("version", modelVersion ?? "");
                w.WriteEndObject();
            }
            if (modelSource is not null) w.WriteString("model_source", modelSource);
            if (daemonVersion is not null) w.WriteString("daemon_version", daemonVersion);
            if (camera is not null)
            {
                w.WriteStartObject("camera");
                w.WriteString("name", camera.Name);
                w.WriteString("state", camera.State);
                if (camera.Error is null) w.WriteNull("error"); else w.WriteString("error", camera.Error);
                w.WriteString("at", Timestamp(camera.AtUtc));
                w.WriteEndObject();
            }
            if (learner is not null)
            {
                // The public half of the key this device signs its learned readouts with (a .pub file's text), so the
                // fleet can verify what arrives on qana/{device}/readouts.
                w.WriteStartObject("learner_key");
                w.WriteString("id", learner.KeyIdHex);
                w.WriteString("public", learner.ToText());
                w.WriteEndObject();
            }
            // Results the broker kept refusing, held in LiteDB and sent again after a restart: an operator sees them here
            // rather than only in the journal.
            if (deadLetters is int dead) w.WriteNumber("dead_letters", dead);
            // A configured power sensor the daemon runs without (it was missing or refused at start).
            if (powerError is not null) w.WriteString("power_error", powerError);
            // The free-space floor: what it deleted since the start (captures are being lost for room, which only the
            // journal said before) and whether a disk stays under it with nothing more to delete.
            if (retention is not null)
            {
                w.WriteStartObject("retention");
                w.WriteNumber("min_free_mb", retention.MinFreeMegabytes);
                w.WriteNumber("deleted_done", retention.DeletedFromDone);
                w.WriteNumber("deleted_quarantined", retention.DeletedFromQuarantine);
                w.WriteNumber("deleted_reasons", retention.ReasonsDeleted);
                if (retention.LastDeletedAtUtc is DateTime last) w.WriteString("last_deleted_at", Timestamp(last));
                else w.WriteNull("last_deleted_at");
                w.WriteBoolean("short", retention.Short);
                w.WriteEndObject();
            }
            // The store's pruning of delivered results: results are records, and an operator sees them go.
            if (store is not null)
            {
                w.WriteStartObject("store");
                w.WriteNumber("keep_results_days", store.KeepDays);
                w.WriteNumber("deleted_results", store.DeletedResults);
                if (store.LastDeletedAtUtc is DateTime pruned) w.WriteString("last_deleted_at", Timestamp(pruned));
                else w.WriteNull("last_deleted_at");
                w.WriteEndObject();
            }
            w.WriteString("at", Timestamp(DateTime.UtcNow));
            w.WriteEndObject();
        }
        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>
    /// Power telemetry: the last reading, taken at <paramref name="readAtUtc"/> (<c>read_at</c>), published at <c>at</c>.
    /// While the sensor fails the last good reading is repeated, and <c>read_at</c> shows how old it is.
    /// </summary>
    public static byte[] Power(string sensor, double busVolts, double currentAmps, double powerWatts, double? idleWatts, long failures, DateTime readAtUtc)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteString("sensor", sensor);
            w.WriteNumber("bus_v", Math.Round(busVolts, 4));
            w.WriteNumber("current_a", Math.Round(currentAmps, 6));
            w.WriteNumber("power_w", Math.Round(powerWatts, 5));
            if (idleWatts is double i) w.WriteNumber("idle_w", Math.Round(i, 5)); else w.WriteNull("idle_w");
            w.WriteNumber("read_failures", failures);
            w.WriteString("read_at", Timestamp(readAtUtc));
            w.WriteString("at", Timestamp(DateTime.UtcNow));
            w.WriteEndObject();
        }
        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>
    /// The largest clinician label taken, in bytes. A label is a few hundred bytes and this leaves pages of note; the raw
    /// payload is stored with the label, so without a bound anyone who may publish on the feedback topic grew the
    /// database by whatever they sent (and one over LiteDB's 16 MB document limit failed as a storage failure, was
    /// never acknowledged and came back at every session renewal).
    /// </summary>
    public const int MaxFeedbackBytes = 16 * 1024;

    /// <summary>Clinician feedback: {"result_id": "...", "label": "mel", "clinician": "...", "note": "..."}.</summary>
    public static bool TryParseFeedback(ReadOnlySpan<byte> json, out string resultId, out string label, out string? clinician, out string? note,
        out string? lesionId, out string error)
    {
        resultId = label = ""; clinician = note = lesionId = null; error = "";
        if (json.Length > MaxFeedbackBytes) { error = $"{json.Length} bytes, more than the {MaxFeedbackBytes} a label may have"; return false; }
        try
        {
            using JsonDocument doc = JsonDocument.Parse(json.ToArray());
            JsonElement root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) { error = "not a JSON object"; return false; }
            if (!root.TryGetProperty("result_id", out JsonElement id) || id.ValueKind != JsonValueKind.String || string.IsNullOrWhiteSpace(id.GetString()))
            { error = "missing string field result_id"; return false; }
            if (!root.TryGetProperty("label", out JsonElement l) || l.ValueKind != JsonValueKind.String)
            { error = "missing string field label"; return false; }
            int k = Classes.IndexOf(l.GetString()!);
            if (k < 0) { error = $"label '{l.GetString()}' is not one of {string.Join(", ", Classes.Codes)}"; return false; }
            resultId = id.GetString()!;
            label = Classes.Codes[k];
            if (root.TryGetProperty("clinician", out JsonElement c) && c.ValueKind == JsonValueKind.String) clinician = c.GetString();
            if (root.TryGetProperty("note", out JsonElement n) && n.ValueKind == JsonValueKind.String) note = n.GetString();
            if (root.TryGetProperty("lesion_id", out JsonElement lesion) && lesion.ValueKind == JsonValueKind.String && !string.IsNullOrWhiteSpace(lesion.GetString()))
                lesionId = lesion.GetString();
            return true;
        }
        catch (JsonException e) { error = "invalid JSON: " + e.Message; return false; }
        // JsonDocument checks the structure only: a string that is not valid text (bytes that are not UTF-8, or an escaped
        // lone surrogate such as "\ud800") throws here when it is read. Let out, it reached MQTTnet, which sends no PUBACK
        // for a message whose handler throws (the full-disk path relies on that): the broker kept the label and sent it
        // again on every new connection, to be thrown again.
        catch (InvalidOperationException e) { error = "invalid text in a JSON string: " + e.Message; return false; }
    }

    /// <summary>A UTC time as every payload writes it: ISO 8601 to the millisecond, with Z.</summary>
    private static string Timestamp(DateTime utc) => utc.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture);
}
