using System.Globalization;
using Microsoft.Extensions.Logging;
using QanaEdge.Daemon.Configuration;

namespace QanaEdge.Daemon.Capture;

/// <summary>
/// Acknowledges captures once their result is stored (move to the done folder or delete, by config) and quarantines
/// rejected ones (moved, or written for camera frames, with a <c>.reason</c> file beside them).
/// </summary>
public sealed class CaptureDisposition(QanaOptions options, ILogger<CaptureDisposition> log)
{
    public void Acknowledge(CaptureItem item) => Acknowledge(item.Path);

    /// <summary>Moves or deletes an inbox file whose result is stored; null (a camera frame) has nothing to acknowledge.</summary>
    public void Acknowledge(string? path)
    {
        if (path is null) return;
        try
        {
            if (options.Done == DonePolicy.Delete) File.Delete(path);
            else
            {
                Directory.CreateDirectory(options.DoneDir!);
                File.Move(path, UniqueTarget(options.DoneDir!, Path.GetFileName(path)), overwrite: false);
            }
        }
        catch (FileNotFoundException) { /* already gone: a duplicate path acknowledged twice */ }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            log.LogError("Cannot acknowledge {File}: {Error} (its result is stored; it will be recognised as a duplicate)", path, e.Message);
        }
    }

    public void Quarantine(CaptureItem item, string sha256, string reason, string message)
    {
        try
        {
            Directory.CreateDirectory(options.QuarantineDir!);
            string name = item.Path is null ? $"{item.Source}-{item.CapturedAtUtc:yyyyMMdd'T'HHmmss'Z'}-{sha256[..12]}.jpg" : Path.GetFileName(item.Path);
            string target = UniqueTarget(options.QuarantineDir!, name);
            if (item.Path is null) File.WriteAllBytes(target, item.Bytes);
            else File.Move(item.Path, target, overwrite: false);
            // One line per field: messages from decoders can span lines.
            message = string.Join(' ', message.Split(['\r', '\n'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
            File.WriteAllText(target + ".reason", string.Create(CultureInfo.InvariantCulture,
                $"reason: {reason}\nmessage: {message}\nsha256: {sha256}\nsource: {item.Source}\nquarantined_at: {DateTime.UtcNow:O}\n"));
            log.LogWarning("Quarantined {File}: {Reason}: {Message}", item.DisplayName, reason, message);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            log.LogError("Cannot quarantine {File} ({Reason}): {Error}", item.DisplayName, reason, e.Message);
        }
    }

    /// <summary>name, or name with a numeric suffix when a file of that name is already there.</summary>
    private static string UniqueTarget(string dir, string name)
    {
        string target = Path.Combine(dir, name);
        for (int i = 1; File.Exists(target) || File.Exists(target + ".reason"); i++)
            target = Path.Combine(dir, $"{Path.GetFileNameWithoutExtension(name)}.{i}{Path.GetExtension(name)}");
        return target;
    }
}
