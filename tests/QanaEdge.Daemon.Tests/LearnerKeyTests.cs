using QanaEdge.Daemon.Configuration;
using QanaEdge.Daemon.Learning;
using QanaEdge.Daemon.Tests.Infrastructure;

namespace QanaEdge.Daemon.Tests;

/// <summary>
/// The device's learner key is made once and verifies, at every start, the readouts it signed: so the key's name and,
/// when the key's folder is new, the folder's own name are flushed to the disk before the key is used, and a failed
/// flush leaves learning off for this run rather than signing with a key a power cut could take back.
/// </summary>
public sealed class LearnerKeyTests : IDisposable
{
    private readonly string _root = TestEnv.TempDir("learner-key");

    public void Dispose() => Directory.Delete(_root, recursive: true);

    [Fact]
    public void A_new_key_is_flushed_with_its_new_folder_before_it_is_used()
    {
        string folder = Path.Combine(_root, "keys"), path = Path.Combine(folder, "learner.key");
        var flushed = new List<(string Folder, bool KeyThere)>();
        using (LearnerKey key = LearnerKey.Open(new LearningOptions { Enabled = true, KeyFile = path }, f => flushed.Add((f, File.Exists(path)))))
        {
            Assert.NotNull(key.Key);
            Assert.Null(key.Problem);
        }
        Assert.Equal([(_root, false), (folder, true)], flushed);

        // The next start loads it and writes nothing.
        flushed.Clear();
        using LearnerKey again = LearnerKey.Open(new LearningOptions { Enabled = true, KeyFile = path }, f => flushed.Add((f, true)));
        Assert.NotNull(again.Key);
        Assert.Empty(flushed);
    }

    [Fact]
    public void A_key_whose_folder_cannot_be_flushed_is_not_used_this_run_and_is_loaded_at_the_next()
    {
        string path = Path.Combine(_root, "learner.key");
        var options = new LearningOptions { Enabled = true, KeyFile = path };
        using (LearnerKey unflushed = LearnerKey.Open(options, _ => throw new IOException("errno 5")))
        {
            Assert.Null(unflushed.Key);
            Assert.Contains("could not be flushed", unflushed.Problem);
        }
        using LearnerKey next = LearnerKey.Open(options, _ => { });
        Assert.NotNull(next.Key);
        Assert.Null(next.Problem);
    }
}
