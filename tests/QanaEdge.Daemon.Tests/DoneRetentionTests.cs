using QanaEdge.Daemon.Capture;
using QanaEdge.Daemon.Tests.Infrastructure;

namespace QanaEdge.Daemon.Tests;

/// <summary>
/// done/ keeps <c>Qana:DoneMinFreeMegabytes</c> free on its disk by deleting its oldest captures. Under the default Move
/// policy every capture stayed there for good, and once done/ had filled the disk nothing more could be settled.
/// </summary>
public sealed class DoneRetentionTests : IDisposable
{
    private readonly string _root = TestEnv.TempDir("retention");

    public void Dispose()
    {
        try { Directory.Delete(_root, recursive: true); } catch (IOException) { }
    }

    /// <summary>
    /// Below the floor, the oldest captures by time stamp (not by name) go until half as much again as the floor is
    /// free; a temporary file (a cross-mount copy in progress) stays; above the floor nothing is touched. The disk's free
    /// space is what the kernel would report for a 12 MB disk holding the folder's files.
    /// </summary>
    [Fact]
    public void Below_the_floor_the_oldest_captures_go_until_half_as_much_again_is_free()
    {
        string done = Directory.CreateDirectory(Path.Combine(_root, "done")).FullName;
        var written = DateTime.UtcNow.AddDays(-30);
        for (int i = 0; i < 10; i++)
        {
            // Names in the reverse order of their time stamps: z-0 is the oldest.
            string path = Path.Combine(done, $"{(char)('z' - i)}-{i}.jpg");
            File.WriteAllBytes(path, new byte[1 << 20]);
            File.SetLastWriteTimeUtc(path, written.AddHours(i));
        }
        string copying = Path.Combine(done, CaptureDisposition.CopyPrefix + "1234-a.jpg");
        File.WriteAllBytes(copying, new byte[1 << 20]);
        File.SetLastWriteTimeUtc(copying, written.AddDays(-1));
        long Free(string dir) => (12L << 20) - Directory.GetFiles(dir).Sum(f => new FileInfo(f).Length);
        var log = new RecordingLogger<DoneRetention>();
        var retention = new DoneRetention(done, 4L << 20, log, Free);

        // 1 MB free of the 4 MB floor: 5 MB go, so that 6 MB are free.
        Assert.Equal(5, retention.PruneIfLow());
        Assert.Equal(["q-9.jpg", "r-8.jpg", "s-7.jpg", "t-6.jpg", "u-5.jpg"],
            Directory.GetFiles(done, "*.jpg").Select(Path.GetFileName).Where(n => !n!.StartsWith('.')).Order(StringComparer.Ordinal));
        Assert.True(File.Exists(copying));
        Assert.Equal(1, log.Count("DONE: 1 MB free on the disk of"));
        Assert.Equal(1, log.Count("deleted its 5 oldest captures (5 MB, written "));

        Assert.Equal(0, retention.PruneIfLow());
        Assert.Single(log.Lines);
    }

    /// <summary>Below the floor with nothing left to delete: a warning at the 1st, 10th, 100th ... check, nothing else.</summary>
    [Fact]
    public void Below_the_floor_with_nothing_to_delete_it_says_so_at_the_1st_and_10th_check()
    {
        string done = Directory.CreateDirectory(Path.Combine(_root, "done")).FullName;
        var log = new RecordingLogger<DoneRetention>();
        var retention = new DoneRetention(done, 4L << 20, log, _ => 1L << 20);
        for (int i = 0; i < 10; i++) Assert.Equal(0, retention.PruneIfLow());
        Assert.Equal(2, log.Count("and no capture left there to delete"));
    }

    /// <summary>
    /// Captures that cannot be deleted (done/ on a disk that went read-only) are not taken for an empty folder: the
    /// warning says they cannot be deleted, and why.
    /// </summary>
    [SmallFileSystemFact]
    public void Captures_that_cannot_be_deleted_are_reported_as_such()
    {
        using var disk = new SmallFileSystem(megabytes: 1);
        string done = Directory.CreateDirectory(Path.Combine(disk.Root, "done")).FullName;
        File.WriteAllBytes(Path.Combine(done, "a.jpg"), new byte[1024]);
        SmallFileSystem.Privileged("mount", "-o", "remount,ro", disk.Root);
        var log = new RecordingLogger<DoneRetention>();
        var retention = new DoneRetention(done, 4L << 20, log, _ => 1L << 20);

        Assert.Equal(0, retention.PruneIfLow());
        Assert.Equal(1, log.Count("and its captures cannot be deleted (1 failed: "));
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
        await using var sub = new ResultSubscriber(broker.Port, "qana/devret/results");
        await sub.ConnectAsync();
        string done = Path.Combine(disk.Root, "done");
        await using var daemon = new DaemonRunner(_root, broker.Port, "devret", null, $"--Qana:DoneDir={done}", "--Qana:DoneMinFreeMegabytes=1");
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
    }
}
