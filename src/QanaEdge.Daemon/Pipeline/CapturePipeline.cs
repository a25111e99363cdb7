using System.Diagnostics;
using System.Security.Cryptography;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using QanaEdge.Daemon.Capture;
using QanaEdge.Daemon.Classification;
using QanaEdge.Daemon.Configuration;
using QanaEdge.Daemon.Messaging;
using QanaEdge.Daemon.Storage;
using QanaEdge.Devices.Power;

namespace QanaEdge.Daemon.Pipeline;

/// <summary>
/// Captures → (bounded channel) → N classifier workers, each with its own engine → (bounded channel) → one store
/// writer that commits results and outbox entries in one LiteDB transaction per batch, then acknowledges the
/// captures (move/delete) and wakes the publisher. Bounded channels with waiting writers give backpressure all the
/// way back to the inbox watcher.
/// </summary>
public sealed class CapturePipeline : IAsyncDisposable
{
    private readonly QanaOptions _options;
    private readonly IClassifierProvider _provider;
    private readonly ResultStore _store;
    private readonly CaptureDisposition _disposition;
    private readonly PipelineProgress _progress;
    private readonly EnergyMeter? _meter;
    private readonly ILogger<CapturePipeline> _log;
    private readonly Channel<CaptureItem> _captures;
    private readonly Channel<(CaptureItem Item, StoredResult Result)> _done;
    private readonly Topics _topics;
    private readonly List<Task> _tasks = [];
    private readonly CancellationTokenSource _stop = new();

    public CapturePipeline(QanaOptions options, IClassifierProvider provider, ResultStore store, CaptureDisposition disposition,
        PipelineProgress progress, EnergyMeter? meter, ILogger<CapturePipeline> log)
    {
        _options = options; _provider = provider; _store = store; _disposition = disposition; _progress = progress; _meter = meter; _log = log;
        _topics = new Topics(options.DeviceId);
        _captures = Channel.CreateBounded<CaptureItem>(new BoundedChannelOptions(options.QueueCapacity)
        { FullMode = BoundedChannelFullMode.Wait, SingleWriter = false, SingleReader = false });
        _done = Channel.CreateBounded<(CaptureItem, StoredResult)>(new BoundedChannelOptions(Math.Max(64, options.QueueCapacity))
        { FullMode = BoundedChannelFullMode.Wait, SingleReader = true });
    }

    /// <summary>Where capture sources write. Writes wait while the pipeline is full.</summary>
    public ChannelWriter<CaptureItem> Input => _captures.Writer;

    /// <summary>Raised after a batch of new results is committed (the publisher listens).</summary>
    public event Action? Stored;

    /// <summary>Raised when the pipeline is done with an inbox path (acknowledged, quarantined or duplicate).</summary>
    public event Action<string>? Released;

    public void Start()
    {
        for (int i = 0; i < _options.Workers; i++)
        {
            IImageClassifier classifier = _provider.CreateClassifier();
            int index = i;
            _tasks.Add(Task.Factory.StartNew(() => WorkerAsync(classifier, index, _stop.Token), _stop.Token,
                TaskCreationOptions.LongRunning, TaskScheduler.Default).Unwrap());
        }
        _tasks.Add(Task.Run(() => WriterAsync(_stop.Token)));
        _log.LogInformation("Pipeline started: {Workers} workers, queue {Capacity}", _options.Workers, _options.QueueCapacity);
    }

    private async Task WorkerAsync(IImageClassifier classifier, int index, CancellationToken ct)
    {
        using (classifier)
        {
            try
            {
                while (await _captures.Reader.WaitToReadAsync(ct).ConfigureAwait(false))
                {
                    while (_captures.Reader.TryRead(out CaptureItem? item))
                    {
                        _progress.OnAccepted();
                        (CaptureItem, StoredResult)? done = Process(classifier, item);
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
        }
    }

    private (CaptureItem, StoredResult)? Process(IImageClassifier classifier, CaptureItem item)
    {
        string sha = Convert.ToHexStringLower(SHA256.HashData(item.Bytes));
        string resultId = Payloads.ResultId(_options.DeviceId, sha, _provider.ModelId, _provider.ModelVersion);
        if (_store.HasResult(resultId))
        {
            // Seen before (the same image again, or a capture whose result was stored just before a crash).
            _log.LogInformation("Duplicate capture {File} (sha256 {Sha}) already has result {ResultId}", item.DisplayName, sha, resultId);
            _disposition.Acknowledge(item);
            Release(item);
            _progress.OnDuplicate();
            return null;
        }
        Classification.Classification c;
        long t0 = Stopwatch.GetTimestamp();
        try
        {
            c = classifier.Classify(item.Bytes);
        }
        catch (CaptureRejectedException e)
        {
            _disposition.Quarantine(item, sha, e.Reason, e.Message);
            Release(item);
            _progress.OnRejected();
            return null;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // The classifier failed in a way it did not classify as a bad image. Quarantining keeps one odd file
            // from stopping the device; the error level says it deserves a look.
            _log.LogError(e, "Classifier failed on {File}", item.DisplayName);
            _disposition.Quarantine(item, sha, "ClassifierError", $"{e.GetType().Name}: {e.Message}");
            Release(item);
            _progress.OnRejected();
            return null;
        }
        long t1 = Stopwatch.GetTimestamp();
        double? energy = _meter?.EnergyMillijoules(t0, t1);
        byte[] payload = Payloads.Result(resultId, sha, c, _provider.ModelId, _provider.ModelVersion, energy, item.CapturedAtUtc);
        var stored = new StoredResult(resultId, sha, c.Label, c.Confidence, c.Refer, c.Tiled, _provider.ModelId, _provider.ModelVersion,
            c.LatencyMs, energy, item.CapturedAtUtc, item.Source, payload, item.LandedTimestamp);
        return (item, stored);
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
                bool[] fresh = CommitWithRetry(batch, ct);
                // Only now, with result and outbox entry durable, is the capture acknowledged.
                for (int i = 0; i < batch.Count; i++)
                {
                    _disposition.Acknowledge(batch[i].Item);
                    Release(batch[i].Item);
                    if (fresh[i])
                    {
                        _progress.OnCompleted();
                        _log.LogInformation("Result {ResultId} for {File}: {Label} (p={Confidence:0.000}, refer={Refer}) in {Latency:0.0} ms",
                            batch[i].Result.ResultId, batch[i].Item.DisplayName, batch[i].Result.Label, batch[i].Result.Confidence, batch[i].Result.Refer, batch[i].Result.LatencyMs);
                    }
                    else _progress.OnDuplicate();
                }
                Stored?.Invoke();
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested) { }
    }

    private bool[] CommitWithRetry(List<(CaptureItem Item, StoredResult Result)> batch, CancellationToken ct)
    {
        var results = batch.ConvertAll(b => b.Result);
        for (int attempt = 1; ; attempt++)
        {
            try { return _store.Commit(results, _topics.Results); }
            catch (Exception e) when (e is IOException or LiteDB.LiteException && !ct.IsCancellationRequested)
            {
                // Nothing is acknowledged until this succeeds, so no capture can be lost; keep trying.
                _log.LogError("Storing {Count} results failed (attempt {Attempt}): {Error}", batch.Count, attempt, e.Message);
                Thread.Sleep(Math.Min(5000, 100 * attempt));
            }
        }
    }

    private void Release(CaptureItem item)
    {
        if (item.Path is not null) Released?.Invoke(item.Path);
    }

    /// <summary>Stops taking captures, lets the workers finish what they hold, stores it, then returns.</summary>
    public async ValueTask DisposeAsync()
    {
        _captures.Writer.TryComplete();
        if (_tasks.Count == 0) { _stop.Dispose(); return; }
        Task workers = Task.WhenAll(_tasks.Take(_tasks.Count - 1));
        try { await workers.WaitAsync(TimeSpan.FromSeconds(10)).ConfigureAwait(false); } catch (Exception) { }
        _done.Writer.TryComplete();
        try { await _tasks[^1].WaitAsync(TimeSpan.FromSeconds(10)).ConfigureAwait(false); } catch (Exception) { }
        _stop.Cancel();
        _stop.Dispose();
    }
}
