using System.Security.Cryptography;
using Microsoft.Extensions.Logging.Abstractions;
using QanaEdge.Daemon.Capture;
using QanaEdge.Daemon.Configuration;
using QanaEdge.Daemon.Tests.Infrastructure;

namespace QanaEdge.Daemon.Tests;

/// <summary>
/// A capture is acknowledged only if the file under its name still holds the bytes that were classified: a new image
/// renamed over a name whose capture is still in the pipeline gets its own result, and a file claimed for
/// acknowledging when the daemon was killed comes back into the inbox at the next start.
/// </summary>
public sealed class InboxIdentityTests : IDisposable
{
    private readonly MosquittoBroker _broker = new();
    private readonly string _root = TestEnv.TempDir("identity");

    public void Dispose()
    {
        _broker.Dispose();
        try { Directory.Delete(_root, recursive: true); } catch (IOException) { }
    }

    private static string Sha(string file) => Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(file)));

    [Theory]
    [InlineData("Move")]
    [InlineData("Delete")]
    public async Task A_new_image_renamed_over_a_name_in_flight_gets_its_own_result(string done)
    {
        string[] first = TestEnv.RealImages(12, skip: 900), second = TestEnv.RealImages(12, skip: 912);
        await using var sub = new ResultSubscriber(_broker.Port, "qana/devid/results");
        await sub.ConnectAsync();
        await using var daemon = new DaemonRunner(_root, _broker.Port, "devid", null, $"--Qana:Done={done}");
        await daemon.StartAsync();

        // Hold the workers between images (a swap that changes nothing, waiting on a gate), so that every capture of
        // the first set is read and in the pipeline, not yet stored, when the second set is renamed over its names.
        using var held = HeldWorkers.Hold(daemon);
        for (int i = 0; i < first.Length; i++) TestEnv.Drop(first[i], daemon.Inbox, $"cap{i:00}.jpg");
        await daemon.AllQueuedAsync(first); // the watcher reads the renamed files at once; the workers wait
        for (int i = 0; i < second.Length; i++)
        {
            string tmp = Path.Combine(daemon.Inbox, $".cap{i:00}.jpg.tmp");
            File.Copy(second[i], tmp);
            File.Move(tmp, Path.Combine(daemon.Inbox, $"cap{i:00}.jpg"), overwrite: true);
        }
        await held.ReleaseAsync();

        var expected = first.Concat(second).Select(Sha).ToHashSet();
        await TestEnv.WaitUntil(() => sub.Results.Count >= expected.Count && Directory.GetFiles(daemon.Inbox).Length == 0,
            TimeSpan.FromSeconds(90), "a result for every image of both sets and an empty inbox",
            () => $"{sub.Results.Count} results, inbox: {string.Join(' ', Directory.GetFiles(daemon.Inbox).Select(Path.GetFileName))}");
        Assert.Equal(expected, sub.Results.Values.Select(q => q.First().GetProperty("image_sha256").GetString()!).ToHashSet());
        // The first set's files were replaced by the renames: what is moved is the second set, each under its own name.
        if (done == "Move")
            for (int i = 0; i < second.Length; i++)
                Assert.Equal(Sha(second[i]), Sha(Path.Combine(daemon.DoneDir, $"cap{i:00}.jpg")));
        else Assert.False(Directory.Exists(daemon.DoneDir));
    }

    [Fact]
    public async Task A_file_claimed_for_acknowledging_when_the_daemon_stopped_is_classified_at_the_next_start()
    {
        string image = TestEnv.RealImages(1, skip: 930)[0];
        string inbox = Path.Combine(_root, "inbox");
        Directory.CreateDirectory(inbox);
        // What a kill between claiming a capture and moving it leaves behind.
        File.Copy(image, Path.Combine(inbox, CaptureDisposition.ClaimPrefix + "0123abcd-left.jpg"));
        await using var sub = new ResultSubscriber(_broker.Port, "qana/devcl/results");
        await sub.ConnectAsync();
        await using var daemon = new DaemonRunner(_root, _broker.Port, "devcl");
        await daemon.StartAsync();
        await TestEnv.WaitUntil(() => sub.Results.Count >= 1 && Directory.GetFiles(daemon.Inbox).Length == 0, TimeSpan.FromSeconds(60), "its result");
        Assert.Equal(Sha(image), sub.Results.Values.Single().First().GetProperty("image_sha256").GetString());
        Assert.Equal(Sha(image), Sha(Path.Combine(daemon.DoneDir, "left.jpg")));
    }

    /// <summary>
    /// A claimed file put back into the inbox whose name is taken by then goes back under a free variant, and the file
    /// under the name stays: a put-back never replaces an entry (renameat2 with RENAME_NOREPLACE). .NET's File.Move with
    /// overwrite: false looks for the name and then renames, so a capture renamed into the name in between was
    /// replaced; that window cannot be timed here, so this shows the refusal and the free variant.
    /// </summary>
    [Fact]
    public void A_claimed_file_put_back_under_a_taken_name_goes_to_a_free_variant_and_the_file_there_stays()
    {
        string inbox = Directory.CreateDirectory(Path.Combine(_root, "inbox")).FullName;
        var options = new QanaOptions { Inbox = inbox, StateDir = _root };
        var disposition = new CaptureDisposition(options, NullLogger<CaptureDisposition>.Instance);
        string[] images = TestEnv.RealImages(2, skip: 932);
        File.Copy(images[0], Path.Combine(inbox, CaptureDisposition.ClaimPrefix + "0123abcd-cap.jpg"));
        File.Copy(images[1], Path.Combine(inbox, "cap.jpg")); // the capture app's next capture, under the same name

        disposition.RecoverClaims();

        Assert.Equal(["cap.1.jpg", "cap.jpg"], Directory.GetFiles(inbox).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        Assert.Equal(Sha(images[1]), Sha(Path.Combine(inbox, "cap.jpg")));
        Assert.Equal(Sha(images[0]), Sha(Path.Combine(inbox, "cap.1.jpg")));
    }

    /// <summary>
    /// A capture whose result is stored but which is still in the inbox (a kill between the commit and the move, or a
    /// done folder it cannot be moved to) is taken again by a daemon that runs another model by then. Its result id
    /// names the model, so the commit, which looked the id up, stored and published a second result for the same
    /// capture under a new id. The capture is now acknowledged with the result its image already has.
    /// </summary>
    [Fact]
    public async Task A_stored_capture_taken_again_after_a_model_change_keeps_its_result()
    {
        string image = TestEnv.RealImages(1, skip: 931)[0];
        string shipped = Path.Combine(TestEnv.RepositoryRoot, "firmware-models", "qana-paper8-64.qana");
        await using var sub = new ResultSubscriber(_broker.Port, "qana/devmc/results");
        await sub.ConnectAsync();
        string first;
        await using (var daemon = new DaemonRunner(_root, _broker.Port, "devmc"))
        {
            await daemon.StartAsync();
            TestEnv.Drop(image, daemon.Inbox);
            await TestEnv.WaitUntil(() => sub.Results.Count == 1 && Directory.GetFiles(daemon.Inbox).Length == 0, TimeSpan.FromSeconds(60), "its result");
            first = sub.Results.Keys.Single();
        }
        // What the kill leaves: the result stored and published, the capture back under its name in the inbox.
        string inbox = Path.Combine(_root, "inbox"), done = Path.Combine(_root, "state", "done");
        File.Move(Path.Combine(done, Path.GetFileName(image)), Path.Combine(inbox, Path.GetFileName(image)));

        await using (var daemon = new DaemonRunner(_root, _broker.Port, "devmc", null, $"--Qana:Model={shipped}"))
        {
            await daemon.StartAsync();
            string duplicate = $"Duplicate capture {Path.GetFileName(image)} (sha256 {Sha(image)}) already has result {first}";
            // The acknowledger moves the capture first and logs the duplicate after: wait for the line too.
            await TestEnv.WaitUntil(() => Directory.GetFiles(daemon.Inbox).Length == 0 && File.Exists(Path.Combine(done, Path.GetFileName(image)))
                && daemon.Log.Events.Any(e => e.Message.StartsWith("Duplicate capture", StringComparison.Ordinal)),
                TimeSpan.FromSeconds(60), "the capture to be acknowledged");
            Assert.Equal(1, daemon.Store!.ResultCount());
            Assert.Equal(0, daemon.Store.OutboxCount());
            Assert.Contains(daemon.Log.At(Serilog.Events.LogEventLevel.Information), l => l.Contains(duplicate, StringComparison.Ordinal));
        }
        Assert.Equal([first], sub.Results.Keys);
    }
}
