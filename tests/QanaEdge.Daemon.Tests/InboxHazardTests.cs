using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using QanaEdge.Daemon.Capture;
using QanaEdge.Daemon.Configuration;
using QanaEdge.Daemon.Pipeline;
using QanaEdge.Daemon.Tests.Infrastructure;

namespace QanaEdge.Daemon.Tests;

/// <summary>
/// What an inbox can hold besides finished images: a done folder that cannot be written, a FIFO, a file its writer
/// has not finished, a name taken over while its rejected capture was in flight. None may stop the inbox, loop, or
/// lose the image.
/// </summary>
public sealed class InboxHazardTests : IDisposable
{
    private readonly MosquittoBroker _broker = new();
    private readonly string _root = TestEnv.TempDir("hazard");

    public void Dispose()
    {
        _broker.Dispose();
        try { Directory.Delete(_root, recursive: true); } catch (IOException) { }
    }

    private static string Sha(byte[] bytes) => Convert.ToHexStringLower(SHA256.HashData(bytes));

    /// <summary>The "N failed in a row" of each error line of <paramref name="log"/> ("... (N failed in a row; errors at 1, 10, 100 ...)").</summary>
    private static IEnumerable<string> FailedInARowAtErrors(RecordingLogger<CaptureDisposition> log) =>
        log.Lines.Where(l => l.Level == LogLevel.Error)
            .Select(l => l.Message[(l.Message.LastIndexOf('(') + 1)..l.Message.IndexOf(';', l.Message.LastIndexOf('('))]);

    private static int Lines(DaemonRunner daemon, string text) => daemon.Log.Events.Count(e => e.Message.Contains(text, StringComparison.Ordinal));

    [Fact]
    public async Task A_done_folder_that_cannot_be_written_is_retried_after_a_pause_not_in_a_loop()
    {
        string image = TestEnv.RealImages(1, skip: 990)[0];
        string blocker = Path.Combine(_root, "blocker");
        string done = Path.Combine(blocker, "done");
        await using var sub = new ResultSubscriber(_broker.Port, "qana/devhz1/results");
        await sub.ConnectAsync();
        await using var daemon = new DaemonRunner(_root, _broker.Port, "devhz1", null, $"--Qana:DoneDir={done}");
        await daemon.StartAsync();
        // Once the daemon runs (at start a folder under a file is a configuration error), the done folder's parent
        // becomes a file: creating the folder fails with an IOException, as a full or read-only disk would.
        File.WriteAllText(blocker, "");

        TestEnv.Drop(image, daemon.Inbox);
        await TestEnv.WaitUntil(() => sub.Results.Count == 1 && Lines(daemon, "Cannot acknowledge") >= 1, TimeSpan.FromSeconds(30), "the result and a failed acknowledge");
        await Task.Delay(TimeSpan.FromSeconds(3)); // inside the first pause (5 s)
        // Before, the file was taken again at once: one image was classified 224 times in 6 s.
        Assert.Equal(1, Lines(daemon, "Cannot acknowledge"));
        Assert.Equal(0, Lines(daemon, "Duplicate capture"));
        Assert.Single(Directory.GetFiles(daemon.Inbox));

        File.Delete(blocker); // the disk is fixed: after the pause the capture is moved
        await TestEnv.WaitUntil(() => Directory.GetFiles(daemon.Inbox).Length == 0, TimeSpan.FromSeconds(30), "the capture to be moved after the pause");
        Assert.Equal(Sha(File.ReadAllBytes(image)), Sha(File.ReadAllBytes(Assert.Single(Directory.GetFiles(done)))));
        // Taken again to be moved, not to be classified: before, each retry classified it again and found it a duplicate.
        Assert.Equal(0, Lines(daemon, "Duplicate capture"));
        Assert.Equal(1, Lines(daemon, "on a later try"));
        Assert.Equal(1, daemon.Store!.ResultCount());
        Assert.All(sub.Results.Values, copies => Assert.Single(copies));
    }

    [Fact]
    public async Task A_fifo_in_the_inbox_is_quarantined_unread_and_the_inbox_keeps_working()
    {
        string image = TestEnv.RealImages(1, skip: 991)[0];
        await using var sub = new ResultSubscriber(_broker.Port, "qana/devhz2/results");
        await sub.ConnectAsync();
        await using var daemon = new DaemonRunner(_root, _broker.Port, "devhz2", null, "--Qana:StableMilliseconds=100");
        await daemon.StartAsync();
        string fifo = Path.Combine(daemon.Inbox, "pipe.jpg");
        using (Process mkfifo = Process.Start("mkfifo", [fifo])) await mkfifo.WaitForExitAsync();

        await Task.Delay(TimeSpan.FromSeconds(1)); // before, opening it blocked the watcher here for good
        TestEnv.Drop(image, daemon.Inbox);
        await TestEnv.WaitUntil(() => sub.Results.Count == 1, TimeSpan.FromSeconds(60), "the image dropped after the FIFO to get its result");
        await TestEnv.WaitUntil(() => File.Exists(Path.Combine(daemon.QuarantineDir, "pipe.jpg.reason")), TimeSpan.FromSeconds(10), "the FIFO's quarantine");
        Assert.Contains("reason: NotAFile", File.ReadAllText(Path.Combine(daemon.QuarantineDir, "pipe.jpg.reason")));
        Assert.False(File.Exists(fifo));
    }

    [Fact]
    public async Task An_image_whose_writer_paused_is_classified_once_finished_not_quarantined()
    {
        byte[] image = File.ReadAllBytes(TestEnv.RealImages(1, skip: 992)[0]);
        await using var sub = new ResultSubscriber(_broker.Port, "qana/devhz3/results");
        await sub.ConnectAsync();
        await using var daemon = new DaemonRunner(_root, _broker.Port, "devhz3", null, "--Qana:StableMilliseconds=100");
        await daemon.StartAsync();

        // A copy over a slow link: half the file, a pause far longer than StableMilliseconds, then the rest.
        string path = Path.Combine(daemon.Inbox, "slow.jpg");
        await using (var writer = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.ReadWrite))
        {
            writer.Write(image, 0, image.Length / 2);
            writer.Flush();
            await TestEnv.WaitUntil(() => Lines(daemon, "looks unfinished") >= 1, TimeSpan.FromSeconds(30), "the half file to be taken for unfinished");
            writer.Write(image, image.Length / 2, image.Length - image.Length / 2);
        }

        await TestEnv.WaitUntil(() => sub.Results.Count == 1, TimeSpan.FromSeconds(60), "the finished image's result");
        Assert.Equal(Sha(image), sub.Results.Values.Single().First().GetProperty("image_sha256").GetString());
        Assert.False(Directory.Exists(daemon.QuarantineDir) && Directory.EnumerateFiles(daemon.QuarantineDir).Any());
    }

    /// <summary>
    /// Captures whose time stamp is days in the clock's future (copied with their times, cp -p or rsync, onto a board
    /// whose clock is behind) count as written long ago: a truncated image and an empty file are quarantined with their
    /// reasons. Before, the truncated one was given back as just written every 5 minutes, and the empty one never
    /// counted as complete, until the clock passed their time stamps.
    /// </summary>
    [Fact]
    public async Task Captures_time_stamped_in_the_future_are_quarantined_as_written_long_ago()
    {
        byte[] good = File.ReadAllBytes(TestEnv.RealImages(1, skip: 996)[0]);
        await using var daemon = new DaemonRunner(_root, _broker.Port, "devhz9", null, "--Qana:StableMilliseconds=100");
        await daemon.StartAsync();
        DateTime future = DateTime.UtcNow.AddDays(3);
        foreach (var (name, bytes) in new[] { ("truncated.jpg", good[..(good.Length / 3)]), ("empty.jpg", Array.Empty<byte>()) })
        {
            // Written outside the inbox and moved in with its time stamp, as a copy that keeps times lands; not from a
            // temporary name, which would count as finished whatever its time.
            string staged = Path.Combine(_root, name);
            File.WriteAllBytes(staged, bytes);
            File.SetLastWriteTimeUtc(staged, future);
            File.Move(staged, Path.Combine(daemon.Inbox, name));
        }

        await TestEnv.WaitUntil(() => File.Exists(Path.Combine(daemon.QuarantineDir, "truncated.jpg")) && File.Exists(Path.Combine(daemon.QuarantineDir, "empty.jpg")),
            TimeSpan.FromSeconds(30), "both captures quarantined", () => string.Join(", ", Directory.GetFiles(daemon.Inbox).Select(Path.GetFileName)));
        Assert.StartsWith("reason: Truncated", File.ReadAllText(Path.Combine(daemon.QuarantineDir, "truncated.jpg.reason")));
        Assert.StartsWith("reason: Empty", File.ReadAllText(Path.Combine(daemon.QuarantineDir, "empty.jpg.reason")));
        Assert.Equal(0, Lines(daemon, "looks unfinished"));
        Assert.Empty(Directory.GetFiles(daemon.Inbox));
    }

    /// <summary>
    /// A capture taken for unfinished and given back is not left counted as pending: the watchdog pings only while the
    /// pipeline is idle or progressing, so one capture counted as pending for good would withhold WATCHDOG=1 after the
    /// first quiet WatchdogSec and have systemd restart the daemon.
    /// </summary>
    [Fact]
    public async Task An_image_taken_for_unfinished_leaves_nothing_pending_once_it_is_classified()
    {
        byte[] image = File.ReadAllBytes(TestEnv.RealImages(1, skip: 994)[0]);
        await using var sub = new ResultSubscriber(_broker.Port, "qana/devhz6/results");
        await sub.ConnectAsync();
        await using var daemon = new DaemonRunner(_root, _broker.Port, "devhz6", null, "--Qana:StableMilliseconds=100");
        await daemon.StartAsync();
        var progress = daemon.Services.GetRequiredService<PipelineProgress>();

        string path = Path.Combine(daemon.Inbox, "slow.jpg");
        await using (var writer = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.ReadWrite))
        {
            writer.Write(image, 0, image.Length / 2);
            writer.Flush();
            await TestEnv.WaitUntil(() => Lines(daemon, "looks unfinished") >= 1, TimeSpan.FromSeconds(30), "the half file to be taken for unfinished");
            writer.Write(image, image.Length / 2, image.Length - image.Length / 2);
        }
        await TestEnv.WaitUntil(() => progress.Completed == 1, TimeSpan.FromSeconds(60), "the finished image's result");

        Assert.Equal(0, progress.Pending);
        // Nothing pending: healthy however long nothing has finished, as an idle device must be.
        Assert.True(progress.IsHealthy(TimeSpan.Zero));
    }

    /// <summary>
    /// An inbox that goes missing (removable media taken out) fails every rescan: the failure is logged at the 1st,
    /// 10th, 100th ... in a row, not at every rescan, and the inbox works again once it is back.
    /// </summary>
    [Fact]
    public async Task A_missing_inbox_is_logged_at_1_10_100_failures_and_works_again_when_it_is_back()
    {
        string image = TestEnv.RealImages(1, skip: 995)[0];
        await using var sub = new ResultSubscriber(_broker.Port, "qana/devhz7/results");
        await sub.ConnectAsync();
        await using var daemon = new DaemonRunner(_root, _broker.Port, "devhz7");
        await daemon.StartAsync();

        Directory.Delete(daemon.Inbox);
        await TestEnv.WaitUntil(() => Lines(daemon, "Inbox scan failed") >= 10 || Lines(daemon, "(10 in a row") == 1, TimeSpan.FromSeconds(60), "ten failed rescans");
        Assert.Equal(2, Lines(daemon, "Inbox scan failed")); // the 1st and the 10th

        Directory.CreateDirectory(daemon.Inbox);
        TestEnv.Drop(image, daemon.Inbox);
        await TestEnv.WaitUntil(() => sub.Results.Count == 1, TimeSpan.FromSeconds(60), "the result of an image dropped once the inbox is back");
        Assert.Equal(1, Lines(daemon, "Inbox scan works again"));
    }

    /// <summary>
    /// A capture whose name is not UTF-8 (a capture app or share writing Windows-1252: "Müller.jpg" as 4D FC 6C 6C 65 72 ...)
    /// is renamed to that name read as Windows-1252 ("€" for 0x80, a C1 control in ISO-8859-1) and classified. .NET
    /// shows such a name with U+FFFD and no path it builds reaches the file: before, the watcher found it gone at every
    /// look, and it was never classified, quarantined or logged. A second one whose new name is taken gets a free variant.
    /// </summary>
    [Fact]
    public async Task A_capture_whose_name_is_not_utf8_is_renamed_and_classified()
    {
        string[] images = TestEnv.RealImages(2, skip: 1000);
        await using var sub = new ResultSubscriber(_broker.Port, "qana/devhz8/results");
        await sub.ConnectAsync();
        await using var daemon = new DaemonRunner(_root, _broker.Port, "devhz8");
        await daemon.StartAsync();

        File.Copy(images[0], Path.Combine(daemon.Inbox, "Müller.jpg"));   // taken already: the second gets Müller.1.jpg
        for (int i = 0; i < 2; i++)
        {
            string staged = Path.Combine(_root, $"staged{i}.jpg");
            File.Copy(images[i], staged);
            // "M\xfcller.jpg" and "M\xfcller\x80.jpg": Windows-1252 bytes, renamed into the inbox by bytes.
            byte[] name = i == 0 ? [(byte)'M', 0xFC, .. "ller.jpg"u8] : [(byte)'M', 0xFC, .. "ller"u8, 0x80, .. ".jpg"u8];
            Assert.Equal(0, Rename([.. Encoding.UTF8.GetBytes(staged), 0], [.. Encoding.UTF8.GetBytes(daemon.Inbox + "/"), .. name, 0]));
        }

        await TestEnv.WaitUntil(() => sub.Results.Count == 2 && Directory.GetFiles(daemon.Inbox).Length == 0, TimeSpan.FromSeconds(60),
            "the results of the two images (three captures, one a duplicate) and an empty inbox", () => string.Join(", ", Directory.GetFiles(daemon.Inbox).Select(Path.GetFileName)));
        Assert.Equal(images.Select(f => Sha(File.ReadAllBytes(f))).ToHashSet(), sub.Results.Values.Select(q => q.First().GetProperty("image_sha256").GetString()!).ToHashSet());
        Assert.Equal(["Müller.1.jpg", "Müller.jpg", "Müller€.jpg"], Directory.GetFiles(daemon.DoneDir).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        Assert.Equal(2, daemon.Log.Events.Count(e => e.Level == Serilog.Events.LogEventLevel.Warning
            && e.Message.Contains("has a name that is not UTF-8 (written in another code page?), which the daemon cannot open: renamed Müller", StringComparison.Ordinal)));
    }

    [DllImport("libc", EntryPoint = "rename", SetLastError = true)]
    private static extern int Rename(byte[] from, byte[] to);

    /// <summary>
    /// A capture app that always writes the same name: each capture goes to done under the next free suffix, and the
    /// search for it goes on from where the last one ended (it looked at every earlier capture.N.jpg at every move),
    /// so a suffix freed meanwhile is not taken again.
    /// </summary>
    [Fact]
    public void Captures_of_one_name_take_the_next_suffix_and_the_search_goes_on_from_the_last()
    {
        string inbox = Directory.CreateDirectory(Path.Combine(_root, "inbox")).FullName;
        var options = new QanaOptions { Inbox = inbox, StateDir = _root, DoneDir = Directory.CreateDirectory(Path.Combine(_root, "done")).FullName };
        var disposition = new CaptureDisposition(options, NullLogger<CaptureDisposition>.Instance);
        File.WriteAllBytes(Path.Combine(options.DoneDir, "capture.jpg"), [1]);
        File.WriteAllBytes(Path.Combine(options.DoneDir, "capture.1.jpg"), [2]);
        string[] images = TestEnv.RealImages(3, skip: 1010);

        string Acknowledge(string image)
        {
            string path = Path.Combine(inbox, "capture.jpg");
            File.Copy(image, path);
            Assert.True(disposition.Acknowledge(path, Sha(File.ReadAllBytes(image))));
            return Path.GetFileName(Directory.GetFiles(options.DoneDir).Single(f => File.ReadAllBytes(f).SequenceEqual(File.ReadAllBytes(image))));
        }
        Assert.Equal("capture.2.jpg", Acknowledge(images[0]));
        Assert.Equal("capture.3.jpg", Acknowledge(images[1]));
        File.Delete(Path.Combine(options.DoneDir, "capture.1.jpg"));
        Assert.Equal("capture.4.jpg", Acknowledge(images[2]));
    }

    /// <summary>
    /// A rejected capture with a name of 250 bytes (125 two-byte characters) is quarantined, twice over, under its name
    /// cut to leave room for its reason file and the temporary that file is written through (name + ".reason.tmp"),
    /// keeping its extension and whole characters. Before, that temporary's name was over NAME_MAX (255 bytes): the
    /// write failed at every retry and the capture was never quarantined.
    /// </summary>
    [Fact]
    public void A_rejected_capture_with_a_name_near_name_max_is_quarantined_under_a_name_that_fits()
    {
        string inbox = Directory.CreateDirectory(Path.Combine(_root, "inbox")).FullName;
        var options = new QanaOptions { Inbox = inbox, StateDir = _root, QuarantineDir = Path.Combine(_root, "quarantine") };
        var disposition = new CaptureDisposition(options, NullLogger<CaptureDisposition>.Instance);
        string name = new string('é', 123) + ".jpg";
        Assert.Equal(250, Encoding.UTF8.GetByteCount(name));
        byte[][] rejected = [Encoding.ASCII.GetBytes("not an image, just text"), Encoding.ASCII.GetBytes("more text, still no image")];

        foreach (byte[] bytes in rejected)
        {
            string path = Path.Combine(inbox, name);
            File.WriteAllBytes(path, bytes);
            Assert.True(disposition.Quarantine(new CaptureItem(path, bytes, "inbox", DateTime.UtcNow.AddHours(-1), 0), Sha(bytes), "NotAnImage", "no image signature"));
        }

        Assert.Empty(Directory.GetFiles(inbox));
        string[] captures = Directory.GetFiles(options.QuarantineDir).Where(f => !f.EndsWith(CaptureDisposition.ReasonSuffix, StringComparison.Ordinal)).ToArray();
        Assert.Equal(2, captures.Length);
        Assert.Equal(rejected.Select(Sha).ToHashSet(), captures.Select(f => Sha(File.ReadAllBytes(f))).ToHashSet());
        foreach (string capture in captures)
        {
            string quarantined = Path.GetFileName(capture);
            Assert.InRange(Encoding.UTF8.GetByteCount(quarantined + CaptureDisposition.ReasonSuffix + ".tmp"), 240, 255);
            Assert.StartsWith("éé", quarantined);
            Assert.EndsWith(".jpg", quarantined);
            Assert.StartsWith("reason: NotAnImage\n", File.ReadAllText(capture + CaptureDisposition.ReasonSuffix));
        }
    }

    /// <summary>
    /// A capture with a name of 254 bytes whose name in done is taken goes to done under a free variant cut to fit
    /// with its suffix (NAME_MAX, 255 bytes). Before, the suffixed name was over it and the move failed at every retry.
    /// </summary>
    [Fact]
    public void A_capture_with_a_name_near_name_max_whose_done_name_is_taken_goes_to_a_free_name_that_fits()
    {
        string inbox = Directory.CreateDirectory(Path.Combine(_root, "inbox")).FullName;
        var options = new QanaOptions { Inbox = inbox, StateDir = _root, DoneDir = Directory.CreateDirectory(Path.Combine(_root, "done")).FullName };
        var disposition = new CaptureDisposition(options, NullLogger<CaptureDisposition>.Instance);
        string name = new string('é', 125) + ".jpg";
        Assert.Equal(254, Encoding.UTF8.GetByteCount(name));
        File.WriteAllBytes(Path.Combine(options.DoneDir, name), [1]);
        string image = TestEnv.RealImages(1, skip: 1025)[0];
        File.Copy(image, Path.Combine(inbox, name));

        Assert.True(disposition.Acknowledge(Path.Combine(inbox, name), Sha(File.ReadAllBytes(image))));

        Assert.Empty(Directory.GetFiles(inbox));
        string moved = Path.GetFileName(Directory.GetFiles(options.DoneDir).Single(f => File.ReadAllBytes(f).SequenceEqual(File.ReadAllBytes(image))));
        Assert.InRange(Encoding.UTF8.GetByteCount(moved), 250, 255);
        Assert.StartsWith("éé", moved);
        Assert.EndsWith(".1.jpg", moved);
    }

    /// <summary>
    /// The first capture of a name after a start, with 4,999 of that name in done and one of them deleted, goes to the
    /// end of them (capture.5000.jpg), found by doubling and halving where it looked at every earlier one in turn.
    /// </summary>
    [Fact]
    public void The_first_capture_of_a_name_after_a_start_goes_after_the_last_suffix_taken()
    {
        string inbox = Directory.CreateDirectory(Path.Combine(_root, "inbox")).FullName;
        var options = new QanaOptions { Inbox = inbox, StateDir = _root, DoneDir = Directory.CreateDirectory(Path.Combine(_root, "done")).FullName };
        File.WriteAllBytes(Path.Combine(options.DoneDir, "capture.jpg"), [0]);
        for (int i = 1; i < 5000; i++) File.WriteAllBytes(Path.Combine(options.DoneDir, $"capture.{i}.jpg"), [1]);
        File.Delete(Path.Combine(options.DoneDir, "capture.17.jpg"));
        string image = TestEnv.RealImages(1, skip: 1020)[0];
        File.Copy(image, Path.Combine(inbox, "capture.jpg"));

        var disposition = new CaptureDisposition(options, NullLogger<CaptureDisposition>.Instance);
        Assert.True(disposition.Acknowledge(Path.Combine(inbox, "capture.jpg"), Sha(File.ReadAllBytes(image))));

        Assert.Equal(File.ReadAllBytes(image), File.ReadAllBytes(Path.Combine(options.DoneDir, "capture.5000.jpg")));
        Assert.False(File.Exists(Path.Combine(options.DoneDir, "capture.17.jpg")));
    }

    /// <summary>
    /// A done folder that cannot be written fails every capture's every try. Each failure was an error line: with a
    /// capture a minute, by the end of a day about five a second. The 1st, 10th, 100th ... failure in a row are errors,
    /// the others debug lines, and the first move that works again says how many failed before it.
    /// </summary>
    [Fact]
    public void Failed_acknowledgements_in_a_row_are_errors_at_1_10_100_and_the_next_move_counts_them()
    {
        string inbox = Directory.CreateDirectory(Path.Combine(_root, "inbox")).FullName;
        string blocker = Path.Combine(_root, "blocker");
        File.WriteAllText(blocker, ""); // the done folder's parent is a file: creating the folder fails, as on a read-only disk
        var options = new QanaOptions { Inbox = inbox, StateDir = _root, DoneDir = Path.Combine(blocker, "done") };
        var log = new RecordingLogger<CaptureDisposition>();
        var disposition = new CaptureDisposition(options, log);
        string image = TestEnv.RealImages(1, skip: 1030)[0], sha = Sha(File.ReadAllBytes(image));
        string path = Path.Combine(inbox, "capture.jpg");
        File.Copy(image, path);

        for (int i = 0; i < 12; i++) Assert.False(disposition.Acknowledge(path, sha));

        Assert.Equal(["1 failed in a row", "10 failed in a row"], FailedInARowAtErrors(log));
        Assert.Equal(10, log.Lines.Count(l => l.Level == LogLevel.Debug && l.Message.StartsWith("Cannot acknowledge", StringComparison.Ordinal)));
        Assert.Equal(File.ReadAllBytes(image), File.ReadAllBytes(path)); // still in the inbox, whole

        File.Delete(blocker);
        Assert.True(disposition.Acknowledge(path, sha));
        Assert.Equal(1, log.Count($"Acknowledged {path}, after 12 failed acknowledgements in a row"));
        Assert.Equal(File.ReadAllBytes(image), File.ReadAllBytes(Path.Combine(options.DoneDir, "capture.jpg")));
    }

    /// <summary>
    /// A quarantine folder that cannot be written fails every rejected file's every try: the 1st, 10th, 100th ...
    /// failed quarantine in a row are errors, the others debug lines, as for acknowledgements, and the first that works
    /// again says how many failed before it. Before, each failed try was an error line.
    /// </summary>
    [Fact]
    public void Failed_quarantines_in_a_row_are_errors_at_1_10_100_and_the_next_quarantine_counts_them()
    {
        string inbox = Directory.CreateDirectory(Path.Combine(_root, "inbox")).FullName;
        string blocker = Path.Combine(_root, "blocker");
        File.WriteAllText(blocker, ""); // the quarantine folder's parent is a file: creating the folder fails, as on a read-only disk
        var options = new QanaOptions { Inbox = inbox, StateDir = _root, QuarantineDir = Path.Combine(blocker, "quarantine") };
        var log = new RecordingLogger<CaptureDisposition>();
        var disposition = new CaptureDisposition(options, log);
        byte[] rejected = Encoding.ASCII.GetBytes("not an image, just text");
        string path = Path.Combine(inbox, "notes.jpg");
        File.WriteAllBytes(path, rejected);
        var item = new CaptureItem(path, rejected, "inbox", DateTime.UtcNow.AddHours(-1), 0);

        for (int i = 0; i < 12; i++) Assert.False(disposition.Quarantine(item, Sha(rejected), "NotAnImage", "no image signature"));

        Assert.Equal(["1 failed in a row", "10 failed in a row"], FailedInARowAtErrors(log));
        Assert.Equal(10, log.Lines.Count(l => l.Level == LogLevel.Debug && l.Message.StartsWith("Cannot quarantine", StringComparison.Ordinal)));
        Assert.Equal(rejected, File.ReadAllBytes(path)); // still in the inbox, under its name

        File.Delete(blocker);
        Assert.True(disposition.Quarantine(item, Sha(rejected), "NotAnImage", "no image signature"));
        Assert.Equal(1, log.Count("Quarantined notes.jpg, after 12 failed quarantines in a row"));
        Assert.Equal(rejected, File.ReadAllBytes(Path.Combine(options.QuarantineDir, "notes.jpg")));
    }

    [Fact]
    public void A_rejected_capture_whose_name_was_taken_over_is_quarantined_from_its_bytes()
    {
        string inbox = Directory.CreateDirectory(Path.Combine(_root, "inbox")).FullName;
        var options = new QanaOptions { Inbox = inbox, StateDir = _root, QuarantineDir = Path.Combine(_root, "quarantine") };
        var disposition = new CaptureDisposition(options, NullLogger<CaptureDisposition>.Instance);
        byte[] rejected = [0xFF, 0xD8, 0xFF, 0x00, 0x01], replacement = File.ReadAllBytes(TestEnv.RealImages(1, skip: 993)[0]);
        string path = Path.Combine(inbox, "cap.jpg");
        File.WriteAllBytes(path, replacement); // renamed over the rejected capture's name while it was in flight

        bool settled = disposition.Quarantine(new CaptureItem(path, rejected, "inbox", DateTime.UtcNow, 0), Sha(rejected), "Truncated", "JPEG ends before its image data");

        Assert.True(settled);
        Assert.Equal(replacement, File.ReadAllBytes(path)); // the new image stays, to be classified
        Assert.Equal(rejected, File.ReadAllBytes(Path.Combine(options.QuarantineDir, "cap.jpg")));
        Assert.Contains($"sha256: {Sha(rejected)}", File.ReadAllText(Path.Combine(options.QuarantineDir, "cap.jpg.reason")));
    }

    /// <summary>
    /// A rejected capture on a full disk (its reason cannot be written) stays in the inbox under its own name, to be
    /// quarantined once there is space, not under the claimed name that only the next start puts back.
    /// </summary>
    [SmallFileSystemFact]
    public void A_rejected_capture_that_cannot_be_quarantined_on_a_full_disk_stays_in_the_inbox_under_its_name()
    {
        using var disk = new SmallFileSystem(megabytes: 2);
        string inbox = Directory.CreateDirectory(Path.Combine(disk.Root, "inbox")).FullName;
        var options = new QanaOptions { Inbox = inbox, StateDir = disk.Root, QuarantineDir = Directory.CreateDirectory(Path.Combine(disk.Root, "quarantine")).FullName };
        var disposition = new CaptureDisposition(options, NullLogger<CaptureDisposition>.Instance);
        byte[] rejected = [0xFF, 0xD8, 0xFF, 0x00, 0x01];
        string path = Path.Combine(inbox, "cap.jpg");
        File.WriteAllBytes(path, rejected);
        var item = new CaptureItem(path, rejected, "inbox", DateTime.UtcNow, 0);
        string filler = disk.Fill();

        Assert.False(disposition.Quarantine(item, Sha(rejected), "Truncated", "JPEG ends before its image data"));
        Assert.Equal(["cap.jpg"], Directory.GetFiles(inbox).Select(Path.GetFileName));
        Assert.Empty(Directory.GetFiles(options.QuarantineDir));

        File.Delete(filler);
        Assert.True(disposition.Quarantine(item, Sha(rejected), "Truncated", "JPEG ends before its image data"));
        Assert.Empty(Directory.GetFiles(inbox));
        Assert.Equal(rejected, File.ReadAllBytes(Path.Combine(options.QuarantineDir, "cap.jpg")));
    }

    /// <summary>
    /// A rejected capture whose name another file took while it was in flight has its bytes only in memory. When they
    /// cannot be written to quarantine (a full disk) there is nothing to try again: the log said the capture "stays in the
    /// inbox", which held only the other file, and the path was held back as unsettled, so the new file waited out a pause
    /// before it was classified. Now the log says the rejected bytes are not kept, and the path is settled at once.
    /// </summary>
    [SmallFileSystemFact]
    public void A_taken_over_rejected_capture_that_cannot_be_written_to_quarantine_is_said_lost_and_its_name_released()
    {
        using var disk = new SmallFileSystem(megabytes: 2);
        string inbox = Directory.CreateDirectory(Path.Combine(disk.Root, "inbox")).FullName;
        var options = new QanaOptions { Inbox = inbox, StateDir = disk.Root, QuarantineDir = Directory.CreateDirectory(Path.Combine(disk.Root, "quarantine")).FullName };
        var log = new RecordingLogger<CaptureDisposition>();
        var disposition = new CaptureDisposition(options, log);
        byte[] rejected = [0xFF, 0xD8, 0xFF, 0x00, 0x01], replacement = File.ReadAllBytes(TestEnv.RealImages(1, skip: 993)[0]);
        string path = Path.Combine(inbox, "cap.jpg");
        File.WriteAllBytes(path, replacement); // renamed over the rejected capture's name while it was in flight
        disk.Fill();

        Assert.True(disposition.Quarantine(new CaptureItem(path, rejected, "inbox", DateTime.UtcNow, 0), Sha(rejected), "Truncated", "JPEG ends before its image data"));

        var error = Assert.Single(log.Lines, l => l.Level == LogLevel.Error);
        Assert.Contains("its name holds another file by now, so its rejected bytes are not kept", error.Message);
        Assert.DoesNotContain(log.Lines, l => l.Message.Contains("stays in the inbox", StringComparison.Ordinal));
        Assert.Equal(replacement, File.ReadAllBytes(path)); // the new image stays, to be classified
        Assert.Empty(Directory.GetFiles(options.QuarantineDir)); // no reason without its capture
    }

    /// <summary>
    /// A quarantine whose move was done but whose folder could not be flushed afterwards was reported as failed, the
    /// capture said to stay in the inbox, which no longer held it. The move stands (a power cut that undid the rename
    /// would leave the capture in the inbox, to be quarantined again): it is reported done, with a warning.
    /// </summary>
    [Fact]
    public void A_quarantine_whose_folder_flush_fails_after_the_move_is_reported_done_with_a_warning()
    {
        string inbox = Directory.CreateDirectory(Path.Combine(_root, "inbox")).FullName;
        var options = new QanaOptions { Inbox = inbox, StateDir = _root, QuarantineDir = Path.Combine(_root, "quarantine") };
        var log = new RecordingLogger<CaptureDisposition>();
        var disposition = new CaptureDisposition(options, log, folder => throw new IOException($"fsync of {folder} failed: errno 5"));
        byte[] rejected = Encoding.ASCII.GetBytes("not an image, just text");
        string path = Path.Combine(inbox, "notes.jpg");
        File.WriteAllBytes(path, rejected);

        Assert.True(disposition.Quarantine(new CaptureItem(path, rejected, "inbox", DateTime.UtcNow, 0), Sha(rejected), "NotAnImage", "no image signature"));

        Assert.Empty(Directory.GetFiles(inbox));
        Assert.Equal(rejected, File.ReadAllBytes(Path.Combine(options.QuarantineDir, "notes.jpg")));
        Assert.DoesNotContain(log.Lines, l => l.Level == LogLevel.Error);
        Assert.Equal(1, log.Count($"Quarantined notes.jpg (NotAnImage), but {options.QuarantineDir} could not be flushed: fsync of {options.QuarantineDir} failed: errno 5; a power cut may undo the move"));
    }

    /// <summary>
    /// A stop while the workers are stuck behind a full queue (here held by a model swap for longer than the pipeline's
    /// 10 s drain): they finish the image in hand and take no more, the model is released only after them, and every
    /// capture they did not get to is still in the inbox and gets its result at the next start.
    /// </summary>
    [Fact]
    public async Task A_stop_with_a_full_queue_leaves_the_rest_in_the_inbox_for_the_next_start()
    {
        string[] images = TestEnv.RealImages(30, skip: 940);
        await using var sub = new ResultSubscriber(_broker.Port, "qana/devhz5/results");
        await sub.ConnectAsync();
        var daemon = new DaemonRunner(_root, _broker.Port, "devhz5", null, "--Qana:Workers=2");
        await daemon.StartAsync();
        using var held = HeldWorkers.Hold(daemon);
        foreach (string image in images) TestEnv.Drop(image, daemon.Inbox);
        await daemon.AllQueuedAsync(images); // the workers wait for the swap

        Task stopping = daemon.DisposeAsync().AsTask();
        await Task.Delay(TimeSpan.FromSeconds(11)); // past the pipeline's 10 s wait for the workers
        await held.ReleaseAsync();
        await stopping.WaitAsync(TimeSpan.FromSeconds(60));

        Assert.Contains(daemon.Log.Events, e => e.Message.Contains("Stopping with captures still queued", StringComparison.Ordinal));
        Assert.DoesNotContain(daemon.Log.Events, e => e.Level >= Serilog.Events.LogEventLevel.Error);
        int stored = Directory.Exists(daemon.DoneDir) ? Directory.GetFiles(daemon.DoneDir).Length : 0;
        Assert.InRange(stored, 0, 4); // at most the images in the workers' hands
        Assert.Equal(images.Length - stored, Directory.GetFiles(daemon.Inbox).Length);

        await using var again = new DaemonRunner(_root, _broker.Port, "devhz5");
        await again.StartAsync();
        await TestEnv.WaitUntil(() => Directory.GetFiles(again.Inbox).Length == 0 && again.Store!.ResultCount() == images.Length,
            TimeSpan.FromSeconds(90), "every capture stored after the restart");
        Assert.Equal(images.Select(f => Sha(File.ReadAllBytes(f))).ToHashSet(), Directory.GetFiles(again.DoneDir).Select(f => Sha(File.ReadAllBytes(f))).ToHashSet());
    }
}
