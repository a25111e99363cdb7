namespace QanaEdge.Daemon.Classification;

/// <summary>
/// The model the workers run, switchable while they run. Each worker classifies one image at a time inside
/// <see cref="EnterImage"/>/<see cref="ExitImage"/> (a read lock) and, on entering, compares <see cref="Generation"/>
/// with the generation of the classifier it holds; when it changed, it disposes its classifier and takes a new one.
/// <see cref="Swap"/> takes the write lock: it waits until every worker is between images, changes the provider with
/// no image in flight, and lets them go on. So no capture is dropped or classified twice (a capture is read from the
/// queue once and classified by whichever model is current when its worker enters), every result comes from one
/// model, and an Akida card is never reprogrammed under a running image. Entering costs an uncontended read lock,
/// allocation-free after a thread's first use.
/// </summary>
public sealed class ActiveModel : IDisposable
{
    private readonly ReaderWriterLockSlim _lock = new(LockRecursionPolicy.NoRecursion);
    private IClassifierProvider _provider;
    private string _source;
    private int _generation;

    /// <param name="source">Where the model comes from (firmware, an applied update, a fallback and why), for the status.</param>
    public ActiveModel(IClassifierProvider provider, string source)
    {
        _provider = provider;
        _source = source;
    }

    public IClassifierProvider Provider => Volatile.Read(ref _provider);
    public string Source => Volatile.Read(ref _source);
    public int Generation => Volatile.Read(ref _generation);

    /// <summary>
    /// Held by whoever opens or programs the Akida card while the daemon runs (an update, the card's return after a
    /// fault), so that they take turns. Workers never take it; a swap's write lock is taken inside it, never around it.
    /// </summary>
    public Lock CardGate { get; } = new();

    /// <summary>
    /// The card's message while the model runs on the managed engine because the card failed under it, else null.
    /// Set and cleared by <see cref="CardFailover"/> inside the swaps that leave and return to the card; while it is
    /// set, updates are built for the managed engine and the card's return takes whatever model is current.
    /// </summary>
    public string? CardFault { get => Volatile.Read(ref _cardFault); set => Volatile.Write(ref _cardFault, value); }
    private string? _cardFault;

    /// <summary>Raised after a swap, outside the lock (the daemon re-publishes its status).</summary>
    public event Action? Changed;

    /// <summary>A worker is about to classify one image: no swap happens until <see cref="ExitImage"/>.</summary>
    public void EnterImage() => _lock.EnterReadLock();

    public void ExitImage() => _lock.ExitReadLock();

    /// <summary>A classifier of the current model and its generation. Call at start or between Enter/ExitImage.</summary>
    public IImageClassifier CreateClassifier(out int generation)
    {
        generation = Generation;
        return Provider.CreateClassifier();
    }

    /// <summary>
    /// With no image in flight, <paramref name="replace"/> gets the current provider and returns the next one (or the
    /// same, to change nothing, with a reason). A provider replaced is disposed here; one that holds a device may be
    /// disposed by <paramref name="replace"/> first (so the card is free for its successor).
    /// </summary>
    public T Swap<T>(Func<IClassifierProvider, (IClassifierProvider Next, string Source, T Outcome)> replace)
    {
        IClassifierProvider old;
        (IClassifierProvider Next, string Source, T Outcome) r;
        _lock.EnterWriteLock();
        try
        {
            old = _provider;
            r = replace(old);
            if (ReferenceEquals(r.Next, old)) return r.Outcome;
            Volatile.Write(ref _provider, r.Next);
            Volatile.Write(ref _source, r.Source);
            Interlocked.Increment(ref _generation);
        }
        finally { _lock.ExitWriteLock(); }
        // Workers still holding classifiers of the old model drop them on their next image; a managed engine owns
        // its buffers, and an Akida engine only borrows the card the old provider releases here.
        old.Dispose();
        Changed?.Invoke();
        return r.Outcome;
    }

    /// <summary>
    /// Releases the current provider (and with it an Akida card) once no image is in flight. A worker still inside an
    /// image after 10 s (one that outlived the pipeline's stop) keeps the provider: releasing a card under a running
    /// image would be a use after free in the native library, and the process is ending anyway.
    /// </summary>
    public void Dispose()
    {
        if (!_lock.TryEnterWriteLock(TimeSpan.FromSeconds(10))) return;
        try { Provider.Dispose(); }
        finally { _lock.ExitWriteLock(); }
        _lock.Dispose();
    }
}
