using Microsoft.Extensions.Logging.Abstractions;
using QanaEdge.Daemon.Capture;
using QanaEdge.Daemon.Configuration;
using QanaEdge.Daemon.Tests.Infrastructure;

namespace QanaEdge.Daemon.Tests;

/// <summary>The inbox watcher over a real folder and a real capture queue that no worker drains.</summary>
public sealed class InboxWatcherTests : IDisposable
{
    private readonly string _root = TestEnv.TempDir("watcher");

    public void Dispose() => Directory.Delete(_root, recursive: true);

    /// <summary>Options for an inbox under the test's folder, with the given rescan period and 50 ms to be stable.</summary>
    private QanaOptions Options(double rescanSeconds) => new()
    {
        Inbox = Directory.CreateDirectory(Path.Combine(_root, "inbox")).FullName, StateDir = _root,
        QuarantineDir = Path.Combine(_root, "quarantine"), DoneDir = Path.Combine(_root, "done"),
        RescanSeconds = rescanSeconds, StableMilliseconds = 50,
    };

    private static InboxWatcher Started(QanaOptions options, CaptureQueue queue)
    {
        var watcher = new InboxWatcher(options, queue, new CaptureDisposition(options, NullLogger<CaptureDisposition>.Instance), NullLogger<InboxWatcher>.Instance);
        watcher.Start();
        return watcher;
    }

    /// <summary>
    /// While the capture queue is full the watcher waits, and the kernel's file events keep coming: a writer that
    /// appends to its files makes one event per write. They wait coalesced, at most one per path, however many come;
    /// before, each waited in memory (a 5 MB image written in 4 KB blocks is 1,280 events), so a busy inbox behind a
    /// full queue grew the daemon without bound. Every file is still taken once the queue drains.
    /// </summary>
    [Fact]
    public async Task File_events_behind_a_full_queue_wait_one_per_path_and_every_file_is_still_taken()
    {
        QanaOptions options = Options(rescanSeconds: 3600);
        string inbox = options.Inbox;
        var queue = new CaptureQueue(capacity: 1, capacityBytes: 1 << 20);
        await using InboxWatcher watcher = Started(options, queue);

        // The first capture fills the queue; the watcher reads the second and waits to hand it over.
        TestEnv.DropBytes([1], inbox, "a.bin");
        TestEnv.DropBytes([2], inbox, "b.bin");
        await TestEnv.WaitUntil(() => queue.HeldBytes == 2, TimeSpan.FromSeconds(30), "the queue full and the watcher waiting");

        string c = Path.Combine(inbox, "c.bin"), d = Path.Combine(inbox, "d.bin");
        using (var fc = new FileStream(c, FileMode.Create, FileAccess.Write, FileShare.ReadWrite, bufferSize: 1))
        using (var fd = new FileStream(d, FileMode.Create, FileAccess.Write, FileShare.ReadWrite, bufferSize: 1))
        {
            for (int i = 0; i < 2000; i++)
            {
                fc.WriteByte((byte)i); fc.Flush();
                fd.WriteByte((byte)i); fd.Flush();
            }
        }
        // Events are delivered on their own thread: once both files have one waiting, no later write adds another. Six
        // paths at most have one: c.bin and d.bin, and, should the watcher be held up in its first rescan, a.bin, b.bin
        // and the temporary names they were written under.
        await TestEnv.WaitUntil(() => watcher.QueuedFileEvents >= 2, TimeSpan.FromSeconds(30), "events of both files");
        Assert.InRange(watcher.QueuedFileEvents, 2, 6);

        var taken = new List<string>();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        while (taken.Count < 4)
        {
            CaptureItem item = await queue.Reader.ReadAsync(timeout.Token);
            taken.Add(Path.GetFileName(item.Path));
            queue.Release(item);
            if (item.Path == c || item.Path == d) Assert.Equal(2000, item.Bytes.Length);
        }
        Assert.Equal(["a.bin", "b.bin", "c.bin", "d.bin"], taken.Order(StringComparer.Ordinal));
    }

    /// <summary>
    /// A capture renamed into the inbox while the watcher is held up, found by the rescan before its event is looked
    /// at: the rescan takes the waiting event's rename along. Before, the rescan took it as a file merely not written to
    /// for StableMilliseconds, and the event, coming second, found it in flight; so a capture cut short, though it had
    /// arrived whole by rename, looked unfinished and waited out the 60 s grace (EndToEnd's corrupt-files test timed
    /// out that way when its daemon started cold).
    /// </summary>
    [Fact]
    public async Task A_rename_waiting_when_the_rescan_finds_the_file_is_kept()
    {
        QanaOptions options = Options(rescanSeconds: 1);
        string inbox = options.Inbox;
        var queue = new CaptureQueue(capacity: 1, capacityBytes: 1 << 20);
        await queue.WriteAsync(new CaptureItem(Path.Combine(inbox, "earlier.bin"), [0], "inbox", DateTime.UtcNow, 0)); // the queue is full
        await using InboxWatcher watcher = Started(options, queue);

        // Written in place: taken once stable, by the watcher's look at waiting files, which then waits on the full queue.
        File.WriteAllBytes(Path.Combine(inbox, "slow.bin"), [1]);
        await TestEnv.WaitUntil(() => queue.HeldBytes == 2, TimeSpan.FromSeconds(10), "the watcher waiting with slow.bin");
        // Renamed in meanwhile; by the time the watcher goes on, the rescan is due and the file is older than 50 ms.
        TestEnv.DropBytes([2], inbox, "renamed.bin");
        await TestEnv.WaitUntil(() => watcher.QueuedFileEvents >= 1, TimeSpan.FromSeconds(10), "the rename's event");
        await Task.Delay(TimeSpan.FromSeconds(1.2));

        var items = new Dictionary<string, CaptureItem>();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        while (items.Count < 3)
        {
            CaptureItem item = await queue.Reader.ReadAsync(timeout.Token);
            items[Path.GetFileName(item.Path)] = item;
            queue.Release(item);
        }
        Assert.False(items["slow.bin"].RenamedIn);
        Assert.True(items["renamed.bin"].RenamedIn);
    }
}
