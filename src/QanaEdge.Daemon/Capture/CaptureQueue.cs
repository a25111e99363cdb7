using System.Threading.Channels;

namespace QanaEdge.Daemon.Capture;

/// <summary>
/// The captures waiting for a classifier, bounded twice: by count (<c>Qana:QueueCapacity</c>) and by the bytes they
/// hold (<c>Qana:QueueBytes</c>). A count alone let 64 captures of up to <c>Qana:MaxFileBytes</c> (32 MiB) each pile up
/// in memory, 2 GiB on a board that may have less; the byte bound keeps a burst of large captures to a known size.
/// <para>
/// A capture's bytes count from the moment it is admitted until its worker is done with them (<see cref="Release"/>),
/// so what is held is the queue and the images in the workers' hands. A writer waits while the capture would not fit;
/// a capture is always admitted when nothing is held, so one larger than the whole bound still gets through alone.
/// Each writer holds at most one more capture while it waits (read, not yet admitted): the watcher and the camera.
/// </para>
/// </summary>
public sealed class CaptureQueue
{
    private readonly Channel<CaptureItem> _channel;
    private readonly long _capacityBytes;
    private readonly Lock _lock = new();
    private long _heldBytes;
    private bool _completed;
    private TaskCompletionSource _released = NewSignal();

    public CaptureQueue(int capacity, long capacityBytes)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(capacityBytes, 1);
        _capacityBytes = capacityBytes;
        _channel = Channel.CreateBounded<CaptureItem>(new BoundedChannelOptions(capacity)
        { FullMode = BoundedChannelFullMode.Wait, SingleWriter = false, SingleReader = false });
    }

    /// <summary>Bytes of the captures admitted and not yet released.</summary>
    public long HeldBytes { get { lock (_lock) return _heldBytes; } }

    public ChannelReader<CaptureItem> Reader => _channel.Reader;

    /// <summary>
    /// Admits a capture: waits while its bytes would not fit, then while the queue is full. Throws
    /// <see cref="ChannelClosedException"/> once the queue is completed, as a channel writer does.
    /// </summary>
    public async ValueTask WriteAsync(CaptureItem item, CancellationToken ct = default)
    {
        long bytes = item.Bytes.Length;
        while (true)
        {
            Task released;
            lock (_lock)
            {
                if (_completed) throw new ChannelClosedException();
                if (_heldBytes == 0 || _heldBytes + bytes <= _capacityBytes)
                {
                    _heldBytes += bytes;
                    break;
                }
                released = _released.Task;
            }
            await released.WaitAsync(ct).ConfigureAwait(false);
        }
        try { await _channel.Writer.WriteAsync(item, ct).ConfigureAwait(false); }
        catch
        {
            Release(item);
            throw;
        }
    }

    /// <summary>Gives back the bytes of a capture a worker is done with (classified, quarantined or failed).</summary>
    public void Release(CaptureItem item)
    {
        TaskCompletionSource released;
        lock (_lock)
        {
            _heldBytes -= item.Bytes.Length;
            released = _released;
            _released = NewSignal();
        }
        released.TrySetResult();
    }

    /// <summary>No more captures: readers finish what is queued, writers get <see cref="ChannelClosedException"/>.</summary>
    public void Complete()
    {
        TaskCompletionSource released;
        lock (_lock)
        {
            _completed = true;
            released = _released;
        }
        _channel.Writer.TryComplete();
        released.TrySetResult(); // a writer waiting for bytes learns it too
    }

    // Continuations run on the pool, not inside Release on a worker's thread.
    private static TaskCompletionSource NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);
}
