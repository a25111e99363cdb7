using System.Buffers;
using SixLabors.ImageSharp.Memory;

namespace QanaEdge.Imaging;

/// <summary>
/// A per-image cap on what the image library may allocate. ImageSharp 2.1 only limits single buffers
/// (AllocationLimitMegabytes), not their sum, so a crafted file could still ask for many of them; this wrapper
/// counts live bytes across every buffer the decoder holds and refuses the allocation that would cross the
/// budget (the decoder then fails with <see cref="InvalidMemoryOperationException"/>, which we report as TooLarge).
/// One instance serves one decode.
/// </summary>
internal sealed class BudgetAllocator : MemoryAllocator
{
    // Size of the pieces large images are split into; matches ImageSharp's own pooled allocator.
    private const int BufferCapacityBytes = 4 << 20;

    private readonly MemoryAllocator _inner;
    private readonly long _budget;
    private long _live;
    private long _peak;

    public BudgetAllocator(MemoryAllocator inner, long budgetBytes)
    {
        _inner = inner;
        _budget = budgetBytes;
    }

    /// <summary>Highest number of bytes held at once so far.</summary>
    public long PeakBytes => Interlocked.Read(ref _peak);

    /// <summary>Bytes currently held.</summary>
    public long LiveBytes => Interlocked.Read(ref _live);

    public long BudgetBytes => _budget;

    protected override int GetBufferCapacityInBytes() => BufferCapacityBytes;

    public override IMemoryOwner<T> Allocate<T>(int length, AllocationOptions options = AllocationOptions.None)
    {
        if (length < 0)
            throw new InvalidMemoryOperationException($"negative buffer length {length}");
        long bytes = (long)length * System.Runtime.CompilerServices.Unsafe.SizeOf<T>();
        long live = Interlocked.Add(ref _live, bytes);
        if (live > _budget)
        {
            Interlocked.Add(ref _live, -bytes);
            throw new InvalidMemoryOperationException(
                $"decoding needs more than the {_budget >> 20} MiB allowed per image");
        }
        long peak;
        while (live > (peak = Interlocked.Read(ref _peak)) && Interlocked.CompareExchange(ref _peak, live, peak) != peak)
        {
        }
        try
        {
            return new Owner<T>(_inner.Allocate<T>(length, options), this, bytes);
        }
        catch
        {
            Interlocked.Add(ref _live, -bytes);
            throw;
        }
    }

    public override void ReleaseRetainedResources() => _inner.ReleaseRetainedResources();

    private void Release(long bytes) => Interlocked.Add(ref _live, -bytes);

    private sealed class Owner<T> : IMemoryOwner<T>
    {
        private IMemoryOwner<T>? _owner;
        private readonly BudgetAllocator _parent;
        private readonly long _bytes;

        public Owner(IMemoryOwner<T> owner, BudgetAllocator parent, long bytes)
        {
            _owner = owner;
            _parent = parent;
            _bytes = bytes;
        }

        public Memory<T> Memory => _owner is { } o ? o.Memory : throw new ObjectDisposedException(nameof(Owner<T>));

        public void Dispose()
        {
            IMemoryOwner<T>? owner = Interlocked.Exchange(ref _owner, null);
            if (owner is null) return;
            owner.Dispose();
            _parent.Release(_bytes);
        }
    }
}
