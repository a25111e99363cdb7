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

    /// <summary>
    /// While the capture queue is full the watcher waits, and the kernel's file events keep coming: a writer that
    /// appends to its files makes one event per write. They wait coalesced, at most one per path, however many come;
    /// before, each waited in memory (a 5 MB image written in 4 KB blocks is 1,280 events), so a busy inbox behind a
    /// full queue grew the daemon without bound. Every file is still taken once the queue drains.
    /// </summary>
    [Fact]
    public async Task File_events_behind_a_full_queue_wait_one_per_path_and_every_file_is_still_taken()
    {
        string inbox = Directory.CreateDirectory(Path.Combine(_root, "inbox")).FullName;
        var options = new QanaOptions
        {
            Inbox = inbox, StateDir = _root, QuarantineDir = Path.Combine(_root, "quarantine"), DoneDir = Path.Combine(_root, "done"),
            RescanSeconds = 3600, StableMilliseconds = 50,
        };
        var queue = new CaptureQueue(capacity: 1, capacityBytes: 1 << 20);
        await using var watcher = new InboxWatcher(options, queue, new CaptureDisposition(options, NullLogger<CaptureDisposition>.Instance), NullLogger<InboxWatcher>.Instance);
        watcher.Start();

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
        // Events are delivered on their own thread: once both files have one waiting, no later write adds another.
        await TestEnv.WaitUntil(() => watcher.QueuedFileEvents >= 2, TimeSpan.FromSeconds(30), "events of both files");
        Assert.Equal(2, watcher.QueuedFileEvents);

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
}
