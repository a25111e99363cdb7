using System.Diagnostics;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using QanaEdge.Daemon.Capture;
using QanaEdge.Daemon.Classification;
using QanaEdge.Daemon.Configuration;
using QanaEdge.Daemon.Hosting;
using QanaEdge.Daemon.Messaging;
using QanaEdge.Daemon.Storage;
using QanaEdge.Devices.Power;

namespace QanaEdge.Daemon.Pipeline;

/// <summary>
/// Captures → (bounded channel) → N classifier workers, each with its own engine → (bounded channel) → one store
/// writer that commits results and outbox entries in one LiteDB transaction per batch and wakes the publisher →
/// (channel) → one acknowledger that moves or deletes the committed captures. Bounded channels with waiting writers
/// give backpressure all the way back to the inbox watcher.
/// <para>
/// Workers do not ask the store whether a result exists: that read took the store's lock, which the writer holds
/// through each commit, and stalled classification behind the disk. The writer's commit skips an image it already
/// holds, so a duplicate capture costs one classification and gets no second result. (A capture taken again after its
/// move failed is the exception: its result is looked up, and it is not classified again; see TryAgainUnclassified.)
/// Acknowledging (unlink or rename, the writer's largest cost when profiled) runs after the commit on its own task, so
/// neither the next commit nor the publish waits for it; a capture is still only acknowledged once its result and
/// outbox entry are durable.
/// </para>
/// </summary>
public sealed class CapturePipeline : IAsyncDisposable
{
    private readonly QanaOptions _options;
    private readonly ActiveModel _model;
    private readonly ResultStore _store;
    private readonly CaptureDisposition _disposition;
    private readonly PipelineProgress _progress;
    private readonly EnergyMeter? _meter;
    private readonly CardFailover? _failover;
    private readonly ILogger<CapturePipeline> _log;
    private readonly CaptureQueue _captures;
    private readonly Channel<(CaptureItem Item, StoredResult Result)> _done;
    // Written by the store writer, and by a worker that takes again a capture whose result is stored (TryAgainUnclassified).
    private readonly Channel<Committed> _committed = Channel.CreateUnbounded<Committed>(new UnboundedChannelOptions { SingleReader = true });
    // Committed captures the acknowledger could not move or delete, by inbox path: taken again, they are not classified again.
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, Committed> _unacknowledged = new(StringComparer.Ordinal);
    private readonly Topics _topics;
    private readonly List<Task> _tasks = [];
    private readonly CancellationTokenSource _stop = new();
    // Stops the workers taking further captures when they did not drain the queue in time at shutdown.
    private readonly CancellationTokenSource _stopWorkers = new();
    // Set when the stop begins: a commit that fails from then on is not retried (see CommitWithRetry).
    private readonly CancellationTokenSource _stopping = new();

    public CapturePipeline(QanaOptions options, ActiveModel model, ResultStore store, CaptureDisposition disposition,
        PipelineProgress progress, EnergyMeter? meter, ILogger<CapturePipeline> log, CardFailover? failover = null)
    {
        _options = options; _model = model; _store = store; _disposition = disposition; _progress = progress; _meter = meter; _log = log;
        _failover = failover;
        _topics = new Topics(options.DeviceId);
        _captures = new CaptureQueue(options.QueueCapacity, options.QueueBytes);
        _done = Channel.CreateBounded<(CaptureItem, StoredResult)>(new BoundedChannelOptions(Math.Max(64, options.QueueCapacity))
        { FullMode = BoundedChannelFullMode.Wait, SingleReader = true });
    }

    /// <summary>Where capture sources write. Writes wait while the pipeline is full (by count or by bytes).</summary>
    public CaptureQueue Input => _captures;

    /// <summary>
    /// Raised when the pipeline is done with an inbox path: (path, settled). Settled: acknowledged, quarantined, or its
    /// name taken by another file; not settled: the file is still there, to be taken again after a pause (it could not
    /// be moved or quarantined, or it looked like a file still being written).
    /// </summary>
    public event Action<string, bool>? Released;

    /// <summary>
    /// How long after its last write a capture that did not arrive by rename and decodes as cut short (Truncated,
    /// Empty) is taken for a file still being written, and tried again later, rather than quarantined.
    /// </summary>
    public static readonly TimeSpan IncompleteGrace = TimeSpan.FromSeconds(60);

    /// <summary>Unacknowledged captures remembered at most (beyond, one taken again is classified again, as before).</summary>
    public const int MaxUnacknowledged = 4096;

    public void Start()
    {
        for (int i = 0; i < _options.Workers; i++)
        {
            IImageClassifier classifier = _model.CreateClassifier(out int generation);
            int index = i;
            _tasks.Add(Task.Factory.StartNew(() => WorkerAsync(classifier, generation, index, _stopWorkers.Token), _stopWorkers.Token,
                TaskCreationOptions.LongRunning, TaskScheduler.Default).Unwrap());
        }
        _tasks.Add(Task.Run(() => WriterAsync(_stop.Token)));
        _tasks.Add(Task.Run(() => AcknowledgerAsync(_stop.Token)));
        _log.LogInformation("Pipeline started: {Workers} workers, queue {Capacity} captures or {MiB:0.#} MiB", _options.Workers,
            _options.QueueCapacity, _options.QueueBytes / (1024.0 * 1024.0));
    }

    /// <summary>
    /// One image at a time inside the active model's image section: a model swap waits for the image in hand and
    /// happens between images; a worker that finds a new generation on entering replaces its classifier first.
    /// </summary>
    private async Task WorkerAsync(IImageClassifier classifier, int generation, int index, CancellationToken ct)
    {
        try
        {
            while (await _captures.Reader.WaitToReadAsync(ct).ConfigureAwait(false))
            {
                while (!ct.IsCancellationRequested && _captures.Reader.TryRead(out CaptureItem? item))
                {
                    _progress.OnAccepted();
                    // The board works on this capture until it is settled: the power meter learns no idle meanwhile.
                    _meter?.BeginWork();
                    (CaptureItem, StoredResult)? done;
                    try
                    {
                        while (true)
                        {
                            Exception? cardFault;
                            _model.EnterImage();
                            try
                            {
                                if (generation != _model.Generation)
                                {
                                    classifier.Dispose();
                                    classifier = _model.CreateClassifier(out generation);
                                }
                                done = Process(classifier, item, out cardFault);
                            }
                            finally { _model.ExitImage(); }
                            if (cardFault is null) break;
                            // Outside the image section: the move off the card waits for the other workers' images.
                            // The next round takes a classifier of the managed model and classifies this image again.
                            _failover!.Leave(generation, cardFault);
                        }
                    }
                    finally { _captures.Release(item); }
                    if (done is { } d) await _done.Writer.WriteAsync(d, ct).ConfigureAwait(false);
                }
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested) { }
        catch (Exception e)
        {
            // A worker must not die silently: the watchdog would catch the stall, but say why first.
            _log.LogCritical(e, "Classifier worker {Index} failed", index);
            throw;
        }
        finally { classifier.Dispose(); }
    }

    /// <summary>
    /// Classifies, stores nothing yet: the result to commit, or null when the capture was quarantined or given back. A
    /// failure of the Akida card is not the image's fault: with a <see cref="CardFailover"/> it comes back in
    /// <paramref name="cardFault"/> and the image stays in hand.
    /// </summary>
    private (CaptureItem, StoredResult)? Process(IImageClassifier classifier, CaptureItem item, out Exception? cardFault)
    {
        cardFault = null;
        string sha = item.Sha256;
        if (TryAgainUnclassified(item, sha)) return null;
        // The model of the classifier that classifies this image, not whatever the daemon runs by the time it is stored.
        string modelId = classifier.ModelId, modelVersion = classifier.ModelVersion;
        string resultId = Payloads.ResultId(_options.DeviceId, sha, modelId, modelVersion);
        Classification.Classification c;
        // Registered with the meter, so that images classified at once by several workers share the power above idle.
        long window = _meter?.BeginInference() ?? 0;
        double? energy = null;
        try
        {
            c = classifier.Classify(item.Bytes);
        }
        catch (CaptureRejectedException e) when (MayBeUnfinished(item, e.Reason))
        {
            // A writer that paused longer than StableMilliseconds (a network copy, an app that opens the file before it
            // encodes) made the file look complete; quarantined, the image it then finished would never be classified.
            _log.LogInformation("{File} looks unfinished ({Reason}: {Message}) and was written {Seconds:0} s ago: tried again later",
                item.DisplayName, e.Reason, e.Message, (DateTime.UtcNow - item.CapturedAtUtc).TotalSeconds);
            Released?.Invoke(item.Path, false);
            _progress.OnGivenBack();
            _meter?.EndWork();
            return null;
        }
        catch (CaptureRejectedException e)
        {
            Released?.Invoke(item.Path, _disposition.Quarantine(item, sha, e.Reason, e.Message));
            _progress.OnRejected();
            _meter?.EndWork();
            return null;
        }
        catch (Exception e) when (_failover is not null && CardFailover.IsCardFault(e))
        {
            cardFault = e;
            return null;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // The classifier failed in a way it did not classify as a bad image. Quarantining keeps one odd file
            // from stopping the device; the error level says it deserves a look.
            _log.LogError(e, "Classifier failed on {File}", item.DisplayName);
            Released?.Invoke(item.Path, _disposition.Quarantine(item, sha, "ClassifierError", $"{e.GetType().Name}: {e.Message}"));
            _progress.OnRejected();
            _meter?.EndWork();
            return null;
        }
        finally
        {
            // Rejected images end their window too: they ran while others did.
            if (_meter is not null) energy = _meter.EndInference(window);
        }
        byte[] payload = Payloads.Result(resultId, sha, c, modelId, modelVersion, energy, item.CapturedAtUtc);
        var stored = new StoredResult(resultId, sha, c.Label, c.Confidence, c.Refer, c.Tiled, modelId, modelVersion,
            c.LatencyMs, energy, item.CapturedAtUtc, item.Source, payload, item.LandedTimestamp,
            c.HeadInput, c.HeadInput is null ? null : classifier.Backbone);
        // The bytes are not needed past here (the acknowledger re-reads the file), so the queue entry does not keep them.
        return (item with { Bytes = [] }, stored);
    }

    /// <summary>
    /// Sends a capture taken again after its acknowledgement failed (a done folder on a mount gone read-only or full)
    /// straight to the acknowledger, when it holds the same bytes and its result is still in the store. Each retry
    /// classified it again, found it a duplicate and logged that, every few minutes per capture for as long as the folder
    /// stayed unwritable.
    /// </summary>
    private bool TryAgainUnclassified(CaptureItem item, string sha)
    {
        if (!_unacknowledged.TryGetValue(item.Path, out Committed? pending) || pending.Sha256 != sha) return false;
        try
        {
            // A store rebuilt meanwhile may have lost the result: then the capture is classified and stored again.
            if (!_store.HasResult(pending.ResultId)) return false;
        }
        catch (Exception e) when (ResultStore.IsStorageFailure(e)) { return false; }
        // Completed only after the workers stop: a capture not taken here stays in the inbox for the next start.
        return _committed.Writer.TryWrite(pending with { Retried = true });
    }

    private async Task WriterAsync(CancellationToken ct)
    {
        var batch = new List<(CaptureItem Item, StoredResult Result)>(64);
        try
        {
            while (await _done.Reader.WaitToReadAsync(ct).ConfigureAwait(false))
            {
                batch.Clear();
                while (batch.Count < 64 && _done.Reader.TryRead(out var d)) batch.Add(d);
                if (CommitWithRetry(batch, ct, out string[] resultIds) is not { } fresh)
                {
                    _log.LogWarning("Stopping with {Count} results not stored: their captures stay in the inbox for the next start", batch.Count);
                    continue;
                }
                // Result and outbox entry are durable (the store has woken the publisher): the captures may be acknowledged.
                for (int i = 0; i < batch.Count; i++)
                {
                    StoredResult r = batch[i].Result;
                    _committed.Writer.TryWrite(new Committed(batch[i].Item.Path, batch[i].Item.DisplayName, fresh[i], resultIds[i], r.ImageSha256, r.Label, r.Confidence, r.Refer, r.LatencyMs));
                }
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested) { }
        catch (Exception e) when (!ct.IsCancellationRequested)
        {
            // As a worker: nothing is stored after this, and the watchdog will stop the daemon; say why first.
            _log.LogCritical(e, "Store writer failed");
            throw;
        }
        finally { _committed.Writer.TryComplete(); }
    }

    /// <summary>Moves or deletes committed captures and reports them; only ever sees captures whose commit succeeded.</summary>
    private async Task AcknowledgerAsync(CancellationToken ct)
    {
        try
        {
            while (await _committed.Reader.WaitToReadAsync(ct).ConfigureAwait(false))
            {
                while (_committed.Reader.TryRead(out Committed? c))
                {
                    bool settled = _disposition.Acknowledge(c.Path, c.Sha256);
                    if (!settled && (_unacknowledged.Count < MaxUnacknowledged || _unacknowledged.ContainsKey(c.Path))) _unacknowledged[c.Path] = c;
                    else if (settled && _unacknowledged.TryRemove(c.Path, out _) && c.Retried)
                        _log.LogInformation("Acknowledged {File} on a later try (result {ResultId})", c.DisplayName, c.ResultId);
                    Released?.Invoke(c.Path, settled);
                    if (c.Retried)
                    {
                        // Taken again only to be moved: no second classification, nothing new to say but the move's outcome.
                        _progress.OnDuplicate();
                        _log.LogDebug("{File} tried again without classifying it again (result {ResultId})", c.DisplayName, c.ResultId);
                    }
                    else if (c.Fresh)
                    {
                        _progress.OnCompleted();
                        _log.LogInformation("Result {ResultId} for {File}: {Label} (p={Confidence:0.000}, refer={Refer}) in {Latency:0.0} ms",
                            c.ResultId, c.DisplayName, c.Label, c.Confidence, c.Refer, c.LatencyMs);
                    }
                    else
                    {
                        // Seen before: the same image again, or a capture whose result was stored just before a crash.
                        _progress.OnDuplicate();
                        _log.LogInformation("Duplicate capture {File} (sha256 {Sha}) already has result {ResultId}", c.DisplayName, c.Sha256, c.ResultId);
                    }
                    _meter?.EndWork();
                }
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested) { }
    }

    /// <summary>What the acknowledger needs of a committed capture (not its bytes, which can be collected now).</summary>
    private sealed record Committed(string Path, string DisplayName, bool Fresh, string ResultId, string Sha256, string Label, float Confidence, bool Refer, double LatencyMs,
        bool Retried = false);

    /// <summary>
    /// Commits the batch, retrying with backoff while the store fails; null when it failed while the pipeline stops.
    /// A stop does not wait for a disk that keeps failing: the retries, 10 s of them and then 10 s of the acknowledger
    /// waiting for the writer, held a stop behind a full disk for 20 s and more, past systemd's stop timeout with a
    /// backlog. Nothing is lost: the captures stay in the inbox, unacknowledged, for the next start.
    /// </summary>
    private bool[]? CommitWithRetry(List<(CaptureItem Item, StoredResult Result)> batch, CancellationToken ct, out string[] resultIds)
    {
        var results = batch.ConvertAll(b => b.Result);
        resultIds = new string[batch.Count];
        for (int attempt = 1; ; attempt++)
        {
            try
            {
                bool[] fresh = _store.Commit(results, _topics.Results, resultIds);
                _progress.OnStored();
                if (attempt > 1) _log.LogWarning("Stored {Count} results after {Attempts} attempts", batch.Count, attempt);
                return fresh;
            }
            catch (Exception e) when (ResultStore.IsStorageFailure(e) && !ct.IsCancellationRequested)
            {
                // Nothing is acknowledged until this succeeds, so no capture can be lost; keep trying. The writer is
                // alive meanwhile: each attempt and each second of the backoff tells the watchdog so, and the status
                // says why nothing completes. A full disk lasts until someone frees space, and at one attempt every 5 s
                // an error each was 720 lines an hour (into a journal that may share the full disk): the 1st, 10th,
                // 100th ... are errors, the others debug lines.
                _log.Log(Logging.IsReported(attempt) ? LogLevel.Error : LogLevel.Debug,
                    "Storing {Count} results failed (attempt {Attempt}; reported at 1, 10, 100 ...): {Error}", batch.Count, attempt, e.Message);
                if (_stopping.IsCancellationRequested) return null;
                string why = ResultStore.IsDiskFull(e) ? "degraded: disk full, retrying to store results" : "degraded: cannot store results, retrying";
                _progress.OnStorageRetrying(why);
                for (int left = Math.Min(5000, 100 * attempt); left > 0 && !_stopping.IsCancellationRequested; left -= 1000)
                {
                    _stopping.Token.WaitHandle.WaitOne(Math.Min(left, 1000));
                    _progress.OnStorageRetrying(why);
                }
            }
        }
    }

    // The age either way: a time stamp in the clock's future (a file copied with its times onto a board whose clock is
    // behind) made every such capture look just written, given back every 5 minutes until the clock passed it.
    private static bool MayBeUnfinished(CaptureItem item, string reason) =>
        !item.RenamedIn && item.Source != "camera" && reason is ("Truncated" or "Empty") && (DateTime.UtcNow - item.CapturedAtUtc).Duration() < IncompleteGrace;

    /// <summary>Stops taking captures, lets the workers finish what they hold, stores it, then returns.</summary>
    public async ValueTask DisposeAsync()
    {
        _captures.Complete();
        _stopping.Cancel();
        if (_tasks.Count == 0) { _stop.Dispose(); _stopWorkers.Dispose(); _stopping.Dispose(); return; }
        // Workers first, then the writer (it completes the acknowledger's channel when it ends), then the acknowledger.
        Task workers = Task.WhenAll(_tasks.Take(_tasks.Count - 2));
        try { await workers.WaitAsync(TimeSpan.FromSeconds(10)).ConfigureAwait(false); } catch (Exception) { }
        if (!workers.IsCompleted)
        {
            // Still draining: each worker finishes the image in hand and takes no more; what is left in the queue is
            // still in the inbox, unacknowledged, and is taken at the next start. Only then may the model go.
            _log.LogWarning("Stopping with captures still queued: they stay in the inbox for the next start");
            _stopWorkers.Cancel();
            try { await workers.WaitAsync(TimeSpan.FromSeconds(10)).ConfigureAwait(false); } catch (Exception) { }
        }
        _done.Writer.TryComplete();
        try { await _tasks[^2].WaitAsync(TimeSpan.FromSeconds(10)).ConfigureAwait(false); } catch (Exception) { }
        try { await _tasks[^1].WaitAsync(TimeSpan.FromSeconds(10)).ConfigureAwait(false); } catch (Exception) { }
        _stop.Cancel();
        _stopWorkers.Cancel();
        _stop.Dispose();
        _stopWorkers.Dispose();
        _stopping.Dispose();
    }
}
