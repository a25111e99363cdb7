using System.Diagnostics;
using System.Security.Cryptography;
using Microsoft.Extensions.Logging.Abstractions;
using QanaEdge.Daemon.Capture;
using QanaEdge.Daemon.Configuration;
using QanaEdge.Daemon.Tests.Infrastructure;

namespace QanaEdge.Daemon.Tests;

/// <summary>
/// Done and quarantine folders on another mount than the inbox (each its own small tmpfs, or a bind mount), where no
/// rename reaches and a capture is copied. File.Move's own copy left a cut-short copy under the capture's name on a
/// full disk (one more at every retry), deleted the source before the copy was on disk, and opened a FIFO to copy it,
/// which blocked the inbox. Now the copy is made under <see cref="CaptureDisposition.CopyPrefix"/>, flushed, renamed
/// into place, and only then is the capture deleted from the inbox; a FIFO is not copied.
/// </summary>
public sealed class CrossFileSystemTests : IDisposable
{
    private readonly MosquittoBroker _broker = new();
    private readonly string _root = TestEnv.TempDir("xfs");

    public void Dispose()
    {
        _broker.Dispose();
        try { Directory.Delete(_root, recursive: true); } catch (IOException) { }
    }

    private static string Sha(byte[] bytes) => Convert.ToHexStringLower(SHA256.HashData(bytes));

    // done/ or quarantine/ is on a 2 MB disk here, below Qana:MinFreeMegabytes: without this, its captures would be
    // deleted as they came.
    private const string KeepCaptures = "--Qana:MinFreeMegabytes=0";

    private static int Lines(DaemonRunner daemon, string text) => daemon.Log.Events.Count(e => e.Message.Contains(text, StringComparison.Ordinal));

    /// <summary>The files in <paramref name="folder"/> with their sizes, "" when there are none: what a failed assertion shows.</summary>
    private static string Listing(string folder) =>
        Directory.Exists(folder) ? string.Join(", ", Directory.GetFiles(folder).Order(StringComparer.Ordinal).Select(f => $"{Path.GetFileName(f)} ({new FileInfo(f).Length} B)")) : "";

    /// <summary>The largest of 20 real images from <paramref name="skip"/> on (their sizes vary from 2 to 30 KB): one that does not fit in <see cref="Free"/>'s room.</summary>
    private static string LargeImage(int skip) => TestEnv.RealImages(20, skip).MaxBy(f => new FileInfo(f).Length)!;

    /// <summary>Frees <paramref name="bytes"/> of a full disk: room for part of a capture, so that a copy of it is cut short.</summary>
    private static void Free(string filler, long bytes)
    {
        using var stream = new FileStream(filler, FileMode.Open, FileAccess.Write);
        stream.SetLength(stream.Length - bytes);
    }

    [SmallFileSystemFact]
    public async Task A_capture_that_does_not_fit_on_the_done_disk_leaves_no_cut_short_copy_and_is_moved_whole_once_there_is_room()
    {
        string image = LargeImage(skip: 1200);
        byte[] bytes = File.ReadAllBytes(image);
        using var disk = new SmallFileSystem(megabytes: 2);
        string done = Directory.CreateDirectory(Path.Combine(disk.Root, "done")).FullName;
        await using var sub = new ResultSubscriber(_broker.Port, "qana/devxfs1/results");
        await sub.ConnectAsync();
        // At debug level: the second failed move is a debug line (errors at the 1st, 10th, 100th ... in a row).
        await using var daemon = new DaemonRunner(_root, _broker.Port, "devxfs1", null, $"--Qana:DoneDir={done}", KeepCaptures, "--Serilog:MinimumLevel=Debug");
        await daemon.StartAsync();
        string Log() => string.Join(" | ", daemon.Log.Events.TakeLast(10).Select(e => e.Message)) + $"; done: {Listing(done)}";

        string filler = disk.Fill();
        Free(filler, 8192); // two pages: half the image fits
        Assert.True(bytes.Length > 8192, $"{image} is {bytes.Length} bytes");
        TestEnv.Drop(image, daemon.Inbox);
        // The first try and the one after the 5 s pause: before, each left a copy cut short (name.jpg, then name.1.jpg).
        await TestEnv.WaitUntil(() => Lines(daemon, "Cannot acknowledge") >= 2 && sub.Results.Count == 1, TimeSpan.FromSeconds(30),
            "the result and two failed moves to the full done disk", Log);
        Assert.Equal("", Listing(done));
        Assert.Equal([Path.GetFileName(image)], Directory.GetFiles(daemon.Inbox).Select(Path.GetFileName));
        Assert.Equal(bytes, File.ReadAllBytes(Path.Combine(daemon.Inbox, Path.GetFileName(image))));

        File.Delete(filler);
        await TestEnv.WaitUntil(() => Directory.GetFiles(daemon.Inbox).Length == 0, TimeSpan.FromSeconds(30), "the capture to be moved once there is room", Log);
        Assert.Equal($"{Path.GetFileName(image)} ({bytes.Length} B)", Listing(done));
        Assert.Equal(bytes, File.ReadAllBytes(Path.Combine(done, Path.GetFileName(image))));
        Assert.Equal(1, daemon.Store!.ResultCount());
        Assert.All(sub.Results.Values, copies => Assert.Single(copies));
    }

    /// <summary>
    /// A done folder that is a second mount of the inbox's own file system (a bind mount): one device, two mounts, and
    /// rename(2) does not cross mounts, so File.Move copied there too. Told apart by device, that copy was left cut
    /// short on a full disk as above; told apart by mount, it is the daemon's own copy, which leaves nothing.
    /// </summary>
    [SmallFileSystemFact]
    public async Task A_done_folder_bind_mounted_from_the_inbox_file_system_gets_no_cut_short_copy_either()
    {
        string image = LargeImage(skip: 1260);
        byte[] bytes = File.ReadAllBytes(image);
        using var disk = new SmallFileSystem(megabytes: 2);
        string inbox = Directory.CreateDirectory(Path.Combine(disk.Root, "inbox")).FullName;
        Directory.CreateDirectory(Path.Combine(disk.Root, "done"));
        string done = TestEnv.TempDir("bind-done");
        SmallFileSystem.Privileged("mount", "--bind", Path.Combine(disk.Root, "done"), done);
        try
        {
            await using var sub = new ResultSubscriber(_broker.Port, "qana/devxfs5/results");
            await sub.ConnectAsync();
            await using var daemon = new DaemonRunner(_root, _broker.Port, "devxfs5", null, $"--Qana:Inbox={inbox}", $"--Qana:DoneDir={done}", KeepCaptures);
            await daemon.StartAsync();
            string Log() => string.Join(" | ", daemon.Log.Events.TakeLast(10).Select(e => e.Message)) + $"; done: {Listing(done)}";

            // The capture is in the inbox, its classification held; the disk is filled to all but two pages.
            using (var held = HeldWorkers.Hold(daemon))
            {
                TestEnv.Drop(image, inbox);
                Free(disk.Fill(), 8192);
                await held.ReleaseAsync();
            }
            await TestEnv.WaitUntil(() => Lines(daemon, "Cannot acknowledge") >= 1 && sub.Results.Count == 1, TimeSpan.FromSeconds(30),
                "the result and a failed move to the full done folder", Log);
            Assert.Equal("", Listing(done));
            Assert.Equal(bytes, File.ReadAllBytes(Path.Combine(inbox, Path.GetFileName(image))));

            File.Delete(Path.Combine(disk.Root, "filler"));
            await TestEnv.WaitUntil(() => Directory.GetFiles(inbox).Length == 0, TimeSpan.FromSeconds(30), "the capture to be moved once there is room", Log);
            Assert.Equal($"{Path.GetFileName(image)} ({bytes.Length} B)", Listing(done));
            Assert.Equal(bytes, File.ReadAllBytes(Path.Combine(done, Path.GetFileName(image))));
        }
        finally { SmallFileSystem.Privileged("umount", "-l", done); }
    }

    [SmallFileSystemFact]
    public async Task A_fifo_quarantined_to_another_file_system_is_removed_with_its_reason_kept_and_the_inbox_keeps_working()
    {
        string image = TestEnv.RealImages(1, skip: 1201)[0];
        using var disk = new SmallFileSystem(megabytes: 2);
        string quarantine = Path.Combine(disk.Root, "quarantine");
        await using var sub = new ResultSubscriber(_broker.Port, "qana/devxfs2/results");
        await sub.ConnectAsync();
        await using var daemon = new DaemonRunner(_root, _broker.Port, "devxfs2", null, "--Qana:StableMilliseconds=100", $"--Qana:QuarantineDir={quarantine}", KeepCaptures);
        await daemon.StartAsync();
        string fifo = Path.Combine(daemon.Inbox, "pipe.jpg");
        using (Process mkfifo = Process.Start("mkfifo", [fifo])) await mkfifo.WaitForExitAsync();
        try
        {
            await Task.Delay(TimeSpan.FromSeconds(1)); // before, the copy to quarantine opened the FIFO and blocked the watcher here
            TestEnv.Drop(image, daemon.Inbox);
            await TestEnv.WaitUntil(() => sub.Results.Count == 1, TimeSpan.FromSeconds(30), "the image dropped after the FIFO to get its result");
            await TestEnv.WaitUntil(() => File.Exists(Path.Combine(quarantine, "pipe.jpg.reason")), TimeSpan.FromSeconds(10), "the FIFO's reason");
            Assert.Contains("reason: NotAFile", File.ReadAllText(Path.Combine(quarantine, "pipe.jpg.reason")));
            Assert.False(File.Exists(fifo));
            Assert.Equal(["pipe.jpg.reason"], Directory.GetFiles(quarantine).Select(Path.GetFileName));
        }
        finally
        {
            // A watcher blocked opening the FIFO (without the fix) is released by a writer, so that the daemon can stop.
            if (File.Exists(fifo))
            {
                var writer = Task.Run(() => { using var w = new FileStream(fifo, FileMode.Open, FileAccess.Write); });
                try { await writer.WaitAsync(TimeSpan.FromSeconds(5)); } catch (TimeoutException) { }
            }
        }
    }

    [SmallFileSystemFact]
    public async Task A_rejected_capture_is_copied_whole_with_its_reason_into_quarantine_on_another_file_system()
    {
        byte[] good = File.ReadAllBytes(LargeImage(skip: 1220));
        // A JPEG whose start-of-image marker is damaged: rejected as it is, however long after its last write. (One cut
        // short would be taken for a file still being written when it is tried again within 60 s of its last write.)
        byte[] damaged = [0, 0, .. good[2..]];
        using var disk = new SmallFileSystem(megabytes: 2);
        string quarantine = Directory.CreateDirectory(Path.Combine(disk.Root, "quarantine")).FullName;
        await using var daemon = new DaemonRunner(_root, _broker.Port, "devxfs3", null, $"--Qana:QuarantineDir={quarantine}", KeepCaptures);
        await daemon.StartAsync();
        string Log() => string.Join(" | ", daemon.Log.Events.TakeLast(10).Select(e => e.Message)) + $"; quarantine: {Listing(quarantine)}";

        // Room for the reason (a page) and part of the capture: before, the copy was cut short there and, being under
        // the capture's name, kept its reason too, a rejected capture that looked whole.
        string filler = disk.Fill();
        Free(filler, 8192);
        Assert.True(damaged.Length > 8192, $"{damaged.Length} bytes");
        TestEnv.DropBytes(damaged, daemon.Inbox, "bad.jpg");
        await TestEnv.WaitUntil(() => Lines(daemon, "Cannot quarantine bad.jpg") >= 1, TimeSpan.FromSeconds(30), "a failed quarantine on the full disk", Log);
        Assert.Equal("", Listing(quarantine));
        Assert.Equal(damaged, File.ReadAllBytes(Path.Combine(daemon.Inbox, "bad.jpg")));

        File.Delete(filler);
        await TestEnv.WaitUntil(() => Directory.GetFiles(daemon.Inbox).Length == 0, TimeSpan.FromSeconds(30), "the capture to be quarantined once there is room", Log);
        Assert.Equal(["bad.jpg", "bad.jpg.reason"], Directory.GetFiles(quarantine).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        Assert.Equal(damaged, File.ReadAllBytes(Path.Combine(quarantine, "bad.jpg")));
        string reason = File.ReadAllText(Path.Combine(quarantine, "bad.jpg.reason"));
        Assert.Matches("^reason: [A-Za-z]+\nmessage: .+\n", reason);
        Assert.Contains($"sha256: {Sha(damaged)}\n", reason);
    }

    [SmallFileSystemFact]
    public async Task A_copy_cut_off_by_a_kill_is_removed_at_the_next_start()
    {
        string image = TestEnv.RealImages(1, skip: 1240)[0];
        using var disk = new SmallFileSystem(megabytes: 2);
        string done = Directory.CreateDirectory(Path.Combine(disk.Root, "done")).FullName;
        string quarantine = Directory.CreateDirectory(Path.Combine(disk.Root, "quarantine")).FullName;
        // What a kill in the middle of a copy leaves (the capture itself is still in the inbox, deleted only after it).
        string name = CaptureDisposition.CopyPrefix + "0badcafe";
        File.WriteAllBytes(Path.Combine(done, name), File.ReadAllBytes(image)[..1024]);
        File.WriteAllBytes(Path.Combine(quarantine, name), [0xFF, 0xD8]);
        await using var sub = new ResultSubscriber(_broker.Port, "qana/devxfs4/results");
        await sub.ConnectAsync();
        await using var daemon = new DaemonRunner(_root, _broker.Port, "devxfs4", null, $"--Qana:DoneDir={done}", $"--Qana:QuarantineDir={quarantine}", KeepCaptures);
        await daemon.StartAsync();

        Assert.Equal("", Listing(quarantine));
        Assert.Equal("", Listing(done));
        foreach (string folder in new[] { done, quarantine })
            Assert.Contains(daemon.Log.Events, e => e.Level == Serilog.Events.LogEventLevel.Warning
                && e.Message == $"Removed {name}, a copy into {folder} that the daemon did not finish");

        // And a capture then goes there whole, as usual.
        TestEnv.Drop(image, daemon.Inbox);
        await TestEnv.WaitUntil(() => Directory.GetFiles(daemon.Inbox).Length == 0, TimeSpan.FromSeconds(30), "the capture to be moved");
        Assert.Equal(File.ReadAllBytes(image), File.ReadAllBytes(Assert.Single(Directory.GetFiles(done))));
    }

    /// <summary>
    /// The copy is in place but its folder cannot be flushed, so its name might not survive a power cut. Before, that
    /// was only a warning and the capture was deleted from the inbox all the same; now the copy is taken back and the
    /// capture stays, to be moved once the flush works.
    /// </summary>
    [SmallFileSystemFact]
    public void A_capture_whose_copy_cannot_be_flushed_into_its_folder_stays_in_the_inbox()
    {
        byte[] bytes = File.ReadAllBytes(TestEnv.RealImages(1, skip: 1250)[0]);
        using var disk = new SmallFileSystem(megabytes: 2);
        string inbox = Directory.CreateDirectory(Path.Combine(_root, "inbox")).FullName;
        var options = new QanaOptions { Inbox = inbox, StateDir = _root, DoneDir = Directory.CreateDirectory(Path.Combine(disk.Root, "done")).FullName };
        bool flushFails = true;
        var flushed = new List<string>();
        var disposition = new CaptureDisposition(options, NullLogger<CaptureDisposition>.Instance, folder =>
        {
            if (flushFails) throw new IOException($"fsync of {folder} failed: errno 5");
            flushed.Add(folder);
        });
        string path = Path.Combine(inbox, "cap.jpg");
        File.WriteAllBytes(path, bytes);

        Assert.False(disposition.Acknowledge(path, Sha(bytes)));
        Assert.Equal(["cap.jpg"], Directory.GetFiles(inbox).Select(Path.GetFileName));
        Assert.Equal(bytes, File.ReadAllBytes(path));
        Assert.Equal("", Listing(options.DoneDir));

        flushFails = false;
        Assert.True(disposition.Acknowledge(path, Sha(bytes)));
        Assert.Empty(Directory.GetFiles(inbox));
        Assert.Equal($"cap.jpg ({bytes.Length} B)", Listing(options.DoneDir));
        Assert.Equal([options.DoneDir], flushed);
    }

    /// <summary>
    /// A capture keeps its name in its claimed one, so that a kill between the claim and the move puts it back under
    /// that name. Names over 200 bytes were claimed as "capture" and came back so, extension and all gone; the claimed
    /// name keeps the whole name up to NAME_MAX with the claim's 16 bytes (239 bytes), and cuts a longer one at a whole
    /// character before its extension. Seen here at the one moment the claim is on disk, the flush of a copy across mounts.
    /// </summary>
    [SmallFileSystemFact]
    public void A_long_name_survives_a_kill_between_its_claim_and_its_move()
    {
        byte[] bytes = File.ReadAllBytes(TestEnv.RealImages(1, skip: 1251)[0]);
        using var disk = new SmallFileSystem(megabytes: 2);
        foreach (var (name, back) in new[]
                 {
                     (new string('é', 115) + ".jpg", new string('é', 115) + ".jpg"),   // 234 bytes: kept whole
                     (new string('é', 125) + ".jpg", new string('é', 117) + ".jpg"),   // 254 bytes: cut to 238
                 })
        {
            string inbox = Directory.CreateDirectory(Path.Combine(_root, $"inbox{name.Length}")).FullName;
            var options = new QanaOptions { Inbox = inbox, StateDir = _root, DoneDir = Directory.CreateDirectory(Path.Combine(disk.Root, "done")).FullName };
            string? claimed = null;
            var disposition = new CaptureDisposition(options, NullLogger<CaptureDisposition>.Instance, folder =>
            {
                claimed = Assert.Single(Directory.GetFiles(inbox));
                File.Copy(claimed, Path.Combine(_root, "at-kill"), overwrite: true);   // what a kill now would leave in the inbox
                throw new IOException("the daemon is killed here");
            });
            string path = Path.Combine(inbox, name);
            File.WriteAllBytes(path, bytes);

            Assert.False(disposition.Acknowledge(path, Sha(bytes)));
            File.Delete(path);   // put back by the failed move: the kill would not have let it
            File.Move(Path.Combine(_root, "at-kill"), claimed!);
            new CaptureDisposition(options, NullLogger<CaptureDisposition>.Instance).RecoverClaims();

            Assert.Equal([back], Directory.GetFiles(inbox).Select(Path.GetFileName));
            Assert.Equal(bytes, File.ReadAllBytes(Path.Combine(inbox, back)));
        }
    }
}
