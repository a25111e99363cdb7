using QanaEdge.Daemon.Capture;
using QanaEdge.Daemon.Tests.Infrastructure;

namespace QanaEdge.Daemon.Tests;

/// <summary>
/// done/ and quarantine/ keep <c>Qana:MinFreeMegabytes</c> free on their disks by deleting their oldest captures (of
/// quarantined ones, the bytes). Under the default Move policy every capture stayed in done/ for good, and every file in
/// the inbox that is not an image in quarantine/; once they had filled the disk nothing more could be settled.
/// </summary>
public sealed class CaptureRetentionTests : IDisposable
{
    private readonly string _root = TestEnv.TempDir("retention");
    private readonly DateTime _written = DateTime.UtcNow.AddDays(-30);

    public void Dispose()
    {
        try { Directory.Delete(_root, recursive: true); } catch (IOException) { }
    }

    private string Folder(string name) => Directory.CreateDirectory(Path.Combine(_root, name)).FullName;

    /// <summary>A file of <paramref name="megabytes"/> MB written <paramref name="hours"/> hours after <see cref="_written"/>.</summary>
    private string Write(string folder, string name, int megabytes, int hours)
    {
        string path = Path.Combine(folder, name);
        File.WriteAllBytes(path, new byte[megabytes << 20]);
        File.SetLastWriteTimeUtc(path, _written.AddHours(hours));
        return path;
    }

    private static string[] Names(string folder) =>
        Directory.GetFiles(folder).Select(f => Path.GetFileName(f)!).Order(StringComparer.Ordinal).ToArray();

    /// <summary>The free space the kernel would report for a disk of <paramref name="capacity"/> bytes holding both folders' files.</summary>
    private static Func<string, long> SharedDisk(long capacity, params string[] folders) =>
        _ => capacity - folders.Sum(d => Directory.GetFiles(d).Sum(f => new FileInfo(f).Length));

    /// <summary>
    /// Below the floor, the oldest captures in done/ by time stamp (not by name) go until half as much again as the
    /// floor is free; a temporary file (a cross-mount copy in progress) stays, and so does quarantine/ while done/ has
    /// enough to give; above the floor nothing is touched.
    /// </summary>
    [Fact]
    public void Below_the_floor_the_oldest_captures_in_done_go_until_half_as_much_again_is_free()
    {
        string done = Folder("done"), quarantine = Folder("quarantine");
        // Names in the reverse order of their time stamps: z-0 is the oldest.
        for (int i = 0; i < 9; i++) Write(done, $"{(char)('z' - i)}-{i}.jpg", 1, i);
        string copying = Write(done, CaptureDisposition.CopyPrefix + "1234-a.jpg", 1, -24);
        Write(quarantine, "old.jpg", 1, -48);
        File.WriteAllText(Path.Combine(quarantine, "old.jpg.reason"), "reason: NotAnImage\n");
        var log = new RecordingLogger<CaptureRetention>();
        var retention = new CaptureRetention(done, quarantine, 4L << 20, 1, log, SharedDisk(25L << 19, done, quarantine));

        // 1.5 MB free (but the reason's bytes) of the 4 MB floor: 5 MB go from done/, so that more than 6 MB are free.
        Assert.Equal(5, retention.PruneIfLow());
        Assert.Equal([CaptureDisposition.CopyPrefix + "1234-a.jpg", "r-8.jpg", "s-7.jpg", "t-6.jpg", "u-5.jpg"], Names(done));
        Assert.True(File.Exists(copying));
        Assert.Equal(["old.jpg", "old.jpg.reason"], Names(quarantine));
        Assert.Equal(1, log.Count("DONE: 1 MB free on the disk of"));
        Assert.Equal(1, log.Count("deleted its 5 oldest captures (5 MB, written "));

        Assert.Equal(0, retention.PruneIfLow());
        Assert.Single(log.Lines);
    }

    /// <summary>
    /// With done/ spent, the bytes of the oldest quarantined captures go on the same disk; their .reason files stay and
    /// say so, and a warning says what went.
    /// </summary>
    [Fact]
    public void With_done_spent_the_bytes_of_the_oldest_quarantined_captures_go_and_their_reasons_stay()
    {
        string done = Folder("done"), quarantine = Folder("quarantine");
        Write(done, "a.jpg", 1, 10);
        for (int i = 0; i < 8; i++)
        {
            Write(quarantine, $"sidecar-{i}.xml", 1, i);
            File.WriteAllText(Path.Combine(quarantine, $"sidecar-{i}.xml.reason"), "reason: NotAnImage\n");
        }
        var log = new RecordingLogger<CaptureRetention>();
        var retention = new CaptureRetention(done, quarantine, 4L << 20, 1, log, SharedDisk(23L << 19, done, quarantine));

        // 2.5 MB free (but the reasons' bytes) of the 4 MB floor: done/ gives its 1 MB, and quarantine/, with 3.5 MB
        // free, the 3 MB of its three oldest, so that more than 6 MB are free.
        Assert.Equal(4, retention.PruneIfLow());
        Assert.Empty(Names(done));
        Assert.All(new[] { 0, 1, 2 }, i =>
        {
            Assert.False(File.Exists(Path.Combine(quarantine, $"sidecar-{i}.xml")));
            string reason = File.ReadAllText(Path.Combine(quarantine, $"sidecar-{i}.xml.reason"));
            Assert.StartsWith("reason: NotAnImage\ndeleted_at: ", reason);
            Assert.Contains("(the capture's bytes, to keep Qana:MinFreeMegabytes free)", reason);
        });
        Assert.True(File.Exists(Path.Combine(quarantine, "sidecar-3.xml")));
        Assert.Equal(1, log.Count("DONE: 2 MB free on the disk of"));
        Assert.Equal(1, log.Count("QUARANTINE: 3 MB free on the disk of"));
        Assert.Equal(1, log.Count("deleted the bytes of its 3 oldest quarantined captures (3 MB, written "));
        Assert.Equal(0, log.Count("nothing more there to delete"));   // done/ was short, but quarantine/ made the room
    }

    /// <summary>
    /// A flood of small files that are not images: with their bytes gone and the disk still short, the oldest reasons
    /// whose capture's bytes are gone go too (by the time they were written, a reason left by an unread FIFO first),
    /// each counted as the block it holds; the summary for the status counts both, once.
    /// </summary>
    [Fact]
    public void With_the_quarantined_bytes_gone_the_oldest_reasons_of_deleted_captures_go_too()
    {
        string done = Folder("done"), quarantine = Folder("quarantine");
        File.WriteAllText(Path.Combine(quarantine, "fifo.reason"), "reason: NotAFile\n");
        File.SetLastWriteTimeUtc(Path.Combine(quarantine, "fifo.reason"), _written.AddHours(-1));
        for (int i = 0; i < 10; i++)
        {
            string sidecar = Path.Combine(quarantine, $"sidecar-{i}.xml");
            File.WriteAllText(sidecar, "<xml/>");
            File.WriteAllText(sidecar + CaptureDisposition.ReasonSuffix, "reason: NotAnImage\n");
            File.SetLastWriteTimeUtc(sidecar, _written.AddHours(i));
            File.SetLastWriteTimeUtc(sidecar + CaptureDisposition.ReasonSuffix, _written.AddHours(i));
        }
        var log = new RecordingLogger<CaptureRetention>();
        // A 90 KiB disk holding 21 files of a block each: 6 KiB free, under a floor of 40 KiB.
        var retention = new CaptureRetention(done, quarantine, 40 << 10, 1, log,
            _ => (90 << 10) - Directory.GetFiles(quarantine).Sum(f => (new FileInfo(f).Length + 4095) / 4096 * 4096));
        int changed = 0;
        retention.Changed += () => changed++;

        // 54 KiB wanted: the ten sidecars' 40 KiB, then four reasons' 16 KiB.
        Assert.Equal(14, retention.PruneIfLow());
        Assert.Equal(["sidecar-3.xml.reason", "sidecar-4.xml.reason", "sidecar-5.xml.reason", "sidecar-6.xml.reason", "sidecar-7.xml.reason", "sidecar-8.xml.reason", "sidecar-9.xml.reason"],
            Names(quarantine));
        Assert.Equal(1, log.Count("deleted the bytes of its 10 oldest quarantined captures"));
        Assert.Equal(1, log.Count("deleted the .reason files of its 4 oldest quarantined captures whose bytes were gone"));
        Assert.Equal(1, changed);
        RetentionSummary summary = retention.Summary;
        Assert.Equal((0L, 10L, 4L, false), (summary.DeletedFromDone, summary.DeletedFromQuarantine, summary.ReasonsDeleted, summary.Short));
        Assert.NotNull(summary.LastDeletedAtUtc);

        Assert.Equal(0, retention.PruneIfLow());
        Assert.Equal(1, changed);
    }

    /// <summary>
    /// A disk under the floor with nothing left to delete is "short" in the summary for the status: said once when it
    /// starts and once when it ends, not at every check.
    /// </summary>
    [Fact]
    public void A_disk_that_stays_short_is_in_the_summary_once_while_it_lasts()
    {
        string done = Folder("done"), quarantine = Folder("quarantine");
        long free = 1L << 20;
        var retention = new CaptureRetention(done, quarantine, 4L << 20, 1, new RecordingLogger<CaptureRetention>(), _ => free);
        int changed = 0;
        retention.Changed += () => changed++;
        Assert.Equal(new RetentionSummary(4, 0, 0, 0, null, Short: false), retention.Summary);

        retention.Check();
        retention.Check();
        Assert.True(retention.Summary.Short);
        Assert.Equal(1, changed);
        free = 10L << 20;
        retention.Check();
        retention.Check();
        Assert.Equal(new RetentionSummary(4, 0, 0, 0, null, Short: false), retention.Summary);
        Assert.Equal(2, changed);
    }

    /// <summary>
    /// With room for N captures above the floor (each at most the largest capture), the next check is due after N
    /// settled captures, not at each; near the floor it is due at each.
    /// </summary>
    [Fact]
    public void A_check_is_due_after_as_many_captures_as_there_is_room_for()
    {
        string done = Folder("done"), quarantine = Folder("quarantine");
        long free = 14L << 20;
        int measured = 0;
        var retention = new CaptureRetention(done, quarantine, 4L << 20, 1L << 20, new RecordingLogger<CaptureRetention>(), _ => { measured++; return free; });

        retention.Check();   // 10 MB above the 4 MB floor: room for ten 1 MB captures
        Assert.Equal(2, measured);   // both folders
        for (int i = 0; i < 9; i++) retention.Settled();
        Assert.Equal(2, measured);
        free = 5L << 20;
        retention.Settled();   // the tenth: due
        Assert.Equal(4, measured);
        retention.Settled();   // 1 MB of room: due again at the next
        Assert.Equal(6, measured);
    }

    /// <summary>Below the floor with nothing left to delete: a warning at the 1st, 10th, 100th ... check, nothing else.</summary>
    [Fact]
    public void Below_the_floor_with_nothing_to_delete_it_says_so_at_the_1st_and_10th_check()
    {
        string done = Folder("done"), quarantine = Folder("quarantine");
        var log = new RecordingLogger<CaptureRetention>();
        var retention = new CaptureRetention(done, quarantine, 4L << 20, 1, log, _ => 1L << 20);
        for (int i = 0; i < 10; i++) Assert.Equal(0, retention.PruneIfLow());
        Assert.Equal(2, log.Count("DONE: 1 MB free on the disk of"));
        Assert.Equal(2, log.Count("QUARANTINE: 1 MB free on the disk of"));
        Assert.Equal(4, log.Count("and nothing more there to delete ("));
    }

    /// <summary>
    /// Captures that cannot be deleted (done/ on a disk that went read-only) are not taken for an empty folder: the
    /// warning says how many could not be deleted, and why.
    /// </summary>
    [SmallFileSystemFact]
    public void Captures_that_cannot_be_deleted_are_reported_as_such()
    {
        using var disk = new SmallFileSystem(megabytes: 1);
        string done = Directory.CreateDirectory(Path.Combine(disk.Root, "done")).FullName;
        File.WriteAllBytes(Path.Combine(done, "a.jpg"), new byte[1024]);
        SmallFileSystem.Privileged("mount", "-o", "remount,ro", disk.Root);
        var log = new RecordingLogger<CaptureRetention>();
        var retention = new CaptureRetention(done, Folder("quarantine"), 4L << 20, 1, log, _ => 1L << 20);

        Assert.Equal(0, retention.PruneIfLow());
        Assert.Equal(1, log.Count("DONE: 1 MB free on the disk of"));
        Assert.Equal(1, log.Count("and nothing more there to delete; 1 could not be deleted: "));
        Assert.True(File.Exists(Path.Combine(done, "a.jpg")));
    }

    /// <summary>
    /// The daemon with done/ on a real 2 MB file system and a floor of 1 MB, given 200 captures (about 3 MB): every one
    /// gets its result and leaves the inbox, the oldest in done/ are deleted as it fills, and the store is untouched.
    /// Before, the moves into done/ failed with the kernel's ENOSPC once it was full, and the captures stayed in the inbox.
    /// </summary>
    [SmallFileSystemFact]
    public async Task A_done_folder_on_a_small_disk_keeps_room_for_new_captures()
    {
        using var disk = new SmallFileSystem(megabytes: 2);
        using var broker = new MosquittoBroker();
        await using var sub = new ResultSubscriber(broker.Port, "qana/devret/results", "qana/devret/status");
        await sub.ConnectAsync();
        string done = Path.Combine(disk.Root, "done");
        await using var daemon = new DaemonRunner(_root, broker.Port, "devret", null, $"--Qana:DoneDir={done}", "--Qana:MinFreeMegabytes=1");
        await daemon.StartAsync();
        string[] images = TestEnv.RealImages(200, skip: 1200);
        Assert.True(images.Sum(f => new FileInfo(f).Length) > 2L << 20);

        foreach (string image in images) TestEnv.Drop(image, daemon.Inbox);
        await TestEnv.WaitUntil(() => sub.Results.Count == images.Length && Directory.GetFiles(daemon.Inbox).Length == 0, TimeSpan.FromSeconds(120),
            "every capture's result and an empty inbox", () => $"{sub.Results.Count} results, {Directory.GetFiles(daemon.Inbox).Length} in the inbox");

        string[] kept = Directory.GetFiles(done);
        Assert.InRange(kept.Length, 1, images.Length - 1);
        Assert.All(kept, f => Assert.Equal(File.ReadAllBytes(Path.Combine(TestEnv.ImagesDir, Path.GetFileName(f))), File.ReadAllBytes(f)));
        Assert.Contains(daemon.Log.Events, e => e.Message.StartsWith("DONE: ", StringComparison.Ordinal) && e.Message.Contains("oldest captures", StringComparison.Ordinal));
        Assert.DoesNotContain(daemon.Log.Events, e => e.Message.StartsWith("Cannot acknowledge", StringComparison.Ordinal));
        sub.AssertOneResultIdPerImage(images);
        // The retained status says that captures went for room, and how many (its last publish follows the last pass).
        await TestEnv.WaitUntil(() => RetentionInStatus(sub) is { } r && r.GetProperty("deleted_done").GetInt64() == images.Length - Directory.GetFiles(done).Length,
            TimeSpan.FromSeconds(10), "the status to count the deleted captures", () => RetentionInStatus(sub)?.ToString() ?? "no retention in the status");
        System.Text.Json.JsonElement retention = RetentionInStatus(sub)!.Value;
        Assert.Equal(1, retention.GetProperty("min_free_mb").GetInt64());
        Assert.Equal(0, retention.GetProperty("deleted_quarantined").GetInt64());
        Assert.False(retention.GetProperty("short").GetBoolean());
        Assert.Equal(System.Text.Json.JsonValueKind.String, retention.GetProperty("last_deleted_at").ValueKind);
    }

    private static System.Text.Json.JsonElement? RetentionInStatus(ResultSubscriber sub) =>
        sub.Messages.Where(m => m.Topic == "qana/devret/status").Select(m => System.Text.Json.JsonDocument.Parse(m.Payload).RootElement)
            .LastOrDefault(e => e.TryGetProperty("retention", out _)) is { ValueKind: System.Text.Json.JsonValueKind.Object } status
            ? status.GetProperty("retention") : null;
}
