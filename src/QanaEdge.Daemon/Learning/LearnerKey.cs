using QanaEdge.Daemon.Configuration;
using QanaEdge.Daemon.Storage;
using QanaEdge.Model.Packaging;

namespace QanaEdge.Daemon.Learning;

/// <summary>
/// This device's learner signing key (role learner: it may sign readout updates only). The readouts the device learns
/// are signed with it, so they are verified, stored and restored at start like any signed update, and the fleet can
/// tell which device learned what. Created on first use (mode 0600, public half beside it as .pub); a key kept when
/// learning is switched off still verifies the readouts learned before.
/// </summary>
public sealed class LearnerKey : IDisposable
{
    private LearnerKey(SigningKey? key, string path, string? problem)
    {
        Key = key;
        Path = path;
        Problem = problem;
    }

    /// <summary>The key; null when learning is off and no key was ever made, or when the key file is unusable.</summary>
    public SigningKey? Key { get; }
    public string Path { get; }
    /// <summary>Why there is no key although learning is on (the daemon runs, without learning).</summary>
    public string? Problem { get; }

    /// <param name="options">Where the key is and whether learning is on.</param>
    /// <param name="syncFolder">Flushes a folder to the disk: <see cref="DurableFile.SyncDirectory"/>, or a test's stand-in.</param>
    public static LearnerKey Open(LearningOptions options, Action<string>? syncFolder = null)
    {
        syncFolder ??= DurableFile.SyncDirectory;
        string path = options.KeyFile ?? throw new ArgumentException("Qana:Learning:KeyFile is not resolved", nameof(options));
        try
        {
            if (File.Exists(path))
            {
                SigningKey key = SigningKey.Load(path);
                if (key.Role == SignerRole.Learner) return new LearnerKey(key, path, null);
                key.Dispose();
                return new LearnerKey(null, path, $"'{path}' is a {PackageSignature.RoleName(key.Role)} key, not a learner key");
            }
            if (!options.Enabled) return new LearnerKey(null, path, null);
            // A key is made once and the readouts it signs are kept: they are verified with it at every start, so the
            // key's name, and the folder's own when it is new, are flushed to the disk before the key is used.
            string folder = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!;
            if (!Directory.Exists(folder))
            {
                Directory.CreateDirectory(folder);
                if (System.IO.Path.GetDirectoryName(folder) is { } parent) syncFolder(parent);
            }
            SigningKey created = SigningKey.Generate(SignerRole.Learner);
            try { created.Save(path[..^".key".Length], syncFolder); }
            catch { created.Dispose(); throw; }
            return new LearnerKey(created, path, null);
        }
        catch (Exception e) when (e is KeyFileException or IOException or UnauthorizedAccessException)
        {
            return new LearnerKey(null, path, e.Message);
        }
    }

    public void Dispose() => Key?.Dispose();
}
