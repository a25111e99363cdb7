using System.Threading.Channels;
using QanaEdge.Daemon.Capture;

namespace QanaEdge.Daemon.Tests;

/// <summary>The capture queue's two bounds (count and bytes) and how a writer waiting on them is woken or stopped.</summary>
public sealed class CaptureQueueTests
{
    private static CaptureItem Capture(int bytes) => new("/inbox/x.jpg", new byte[bytes], "inbox", DateTime.UtcNow, 0);

    [Fact]
    public async Task A_capture_that_would_pass_the_byte_bound_waits_until_a_worker_releases_one()
    {
        var queue = new CaptureQueue(capacity: 64, capacityBytes: 1000);
        CaptureItem first = Capture(600), second = Capture(300), third = Capture(200);
        await queue.WriteAsync(first);
        await queue.WriteAsync(second);

        ValueTask waiting = queue.WriteAsync(third);
        await Task.Delay(100);
        Assert.False(waiting.IsCompleted); // 600 + 300 + 200 > 1000
        Assert.Equal(900, queue.HeldBytes);

        Assert.True(queue.Reader.TryRead(out CaptureItem? taken));
        Assert.Same(first, taken);
        queue.Release(taken!);
        await waiting.AsTask().WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(500, queue.HeldBytes);
    }

    [Fact]
    public async Task A_capture_larger_than_the_whole_bound_is_taken_alone()
    {
        var queue = new CaptureQueue(capacity: 64, capacityBytes: 1000);
        CaptureItem big = Capture(5000);

        await queue.WriteAsync(big).AsTask().WaitAsync(TimeSpan.FromSeconds(5));
        ValueTask next = queue.WriteAsync(Capture(10));
        await Task.Delay(100);
        Assert.False(next.IsCompleted);

        Assert.True(queue.Reader.TryRead(out CaptureItem? taken));
        queue.Release(taken!);
        await next.AsTask().WaitAsync(TimeSpan.FromSeconds(5));
    }

    [Fact]
    public async Task The_count_bound_still_holds_under_the_byte_bound()
    {
        var queue = new CaptureQueue(capacity: 2, capacityBytes: 1 << 20);
        await queue.WriteAsync(Capture(10));
        await queue.WriteAsync(Capture(10));

        ValueTask third = queue.WriteAsync(Capture(10));
        await Task.Delay(100);
        Assert.False(third.IsCompleted);

        Assert.True(queue.Reader.TryRead(out _)); // taken by a worker: room in the channel, bytes still held
        await third.AsTask().WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(30, queue.HeldBytes);
    }

    [Fact]
    public async Task Completing_the_queue_stops_a_writer_waiting_for_bytes()
    {
        var queue = new CaptureQueue(capacity: 64, capacityBytes: 100);
        await queue.WriteAsync(Capture(100));
        ValueTask waiting = queue.WriteAsync(Capture(1));

        queue.Complete();

        await Assert.ThrowsAsync<ChannelClosedException>(() => waiting.AsTask().WaitAsync(TimeSpan.FromSeconds(5)));
        Assert.Equal(100, queue.HeldBytes);
    }

    [Fact]
    public async Task A_writer_cancelled_while_waiting_holds_nothing()
    {
        var queue = new CaptureQueue(capacity: 1, capacityBytes: 1 << 20);
        await queue.WriteAsync(Capture(10));
        using var cancel = new CancellationTokenSource();
        ValueTask waiting = queue.WriteAsync(Capture(20), cancel.Token); // waits for the channel, its bytes admitted

        cancel.Cancel();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiting.AsTask().WaitAsync(TimeSpan.FromSeconds(5)));
        Assert.Equal(10, queue.HeldBytes);
    }
}
