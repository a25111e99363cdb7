using System.Collections.Concurrent;
using System.Diagnostics;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using QanaEdge.Daemon.Configuration;

namespace QanaEdge.Daemon.Capture;

/// <summary>
/// Watches the inbox with a FileSystemWatcher plus a periodic full rescan (inotify can overflow or miss files that
/// were there before the daemon started). A file counts only when complete: either it was renamed into its name from a
/// temporary one (leading '.', or .tmp/.part/.partial/.crdownload suffix: those names are never taken), or its size and
/// time stamp have not changed for StableMilliseconds. Complete files are read and written to the capture channel;
/// when the channel is full the watcher waits (backpressure) instead of reading more. A path in flight is not taken
/// again; when the pipeline releases it, it is looked at once more, so a file renamed over it meanwhile (which
/// <see cref="CaptureDisposition"/> leaves in place) is taken then. Files claimed when the daemon stopped are put back
/// at start.
/// </summary>
public sealed class InboxWatcher : IAsyncDisposable
{
    private readonly QanaOptions _options;
    private readonly CaptureQueue _output;
    private readonly CaptureDisposition _disposition;
    private readonly ILogger<InboxWatcher> _log;
    private readonly Channel<(string Path, bool Renamed)> _events = Channel.CreateUnbounded<(string, bool)>(new UnboundedChannelOptions { SingleReader = true });
    /// <summary>Paths handed to the pipeline and not yet acknowledged: a rescan must not queue them again.</summary>
    private readonly ConcurrentDictionary<string, byte> _inFlight = new(StringComparer.Ordinal);
    /// <summary>Files seen but not yet stable: path → (size, mtime, first seen at).</summary>
    private readonly Dictionary<string, (long Size, DateTime Mtime, long Since)> _pending = new(StringComparer.Ordinal);
    private FileSystemWatcher? _fsw;
    private readonly CancellationTokenSource _stop = new();
    private Task? _loop;

    public InboxWatcher(QanaOptions options, CaptureQueue output, CaptureDisposition disposition, ILogger<InboxWatcher> log)
    {
        _options = options; _output = output; _disposition = disposition; _log = log;
    }

    public void Start()
    {
        Directory.CreateDirectory(_options.Inbox);
        _disposition.RecoverClaims();
        _fsw = new FileSystemWatcher(_options.Inbox)
        {
            IncludeSubdirectories = false,
            NotifyFilter = NotifyFilters.FileName | NotifyFilters.LastWrite | NotifyFilters.Size,
            InternalBufferSize = 64 * 1024,
        };
        _fsw.Created += (_, e) => _events.Writer.TryWrite((e.FullPath, false));
        _fsw.Changed += (_, e) => _events.Writer.TryWrite((e.FullPath, false));
        _fsw.Renamed += (_, e) => _events.Writer.TryWrite((e.FullPath, IsTemporaryName(Path.GetFileName(e.OldFullPath))));
        _fsw.Error += (_, e) => _log.LogWarning("Inbox watcher error ({Error}); the periodic rescan covers it", e.GetException().Message);
        _fsw.EnableRaisingEvents = true;
        _loop = Task.Run(() => LoopAsync(_stop.Token));
        _log.LogInformation("Watching inbox {Inbox} (rescan every {Rescan} s, stable after {Stable} ms)", _options.Inbox, _options.RescanSeconds, _options.StableMilliseconds);
    }

    /// <summary>
    /// Called when the pipeline is done with an inbox path (acknowledged, quarantined, or left because another file
    /// took its name). The path is looked at again: a file renamed over it while it was in flight was ignored then.
    /// </summary>
    public void Release(string path)
    {
        Forget(path);
        _events.Writer.TryWrite((path, false));
    }

    private void Forget(string path) => _inFlight.TryRemove(path, out _);

    public static bool IsTemporaryName(string name) =>
        name.StartsWith('.') || name.EndsWith(".tmp", StringComparison.OrdinalIgnoreCase) || name.EndsWith(".part", StringComparison.OrdinalIgnoreCase)
        || name.EndsWith(".partial", StringComparison.OrdinalIgnoreCase) || name.EndsWith(".crdownload", StringComparison.OrdinalIgnoreCase)
        || name.EndsWith('~') || name.EndsWith(".reason", StringComparison.OrdinalIgnoreCase);

    private async Task LoopAsync(CancellationToken ct)
    {
        TimeSpan rescanEvery = TimeSpan.FromSeconds(_options.RescanSeconds);
        long nextRescan = 0;
        while (!ct.IsCancellationRequested)
        {
            try
            {
                if (Stopwatch.GetElapsedTime(nextRescan) >= TimeSpan.Zero || nextRescan == 0)
                {
                    foreach (string path in Directory.EnumerateFiles(_options.Inbox).Order(StringComparer.Ordinal))
                        await ConsiderAsync(path, renamed: false, ct).ConfigureAwait(false);
                    nextRescan = Stopwatch.GetTimestamp() + (long)(rescanEvery.TotalSeconds * Stopwatch.Frequency);
                }
                // Wake for events, or to re-check files waiting to become stable, or for the next rescan.
                TimeSpan wait = _pending.Count > 0 ? TimeSpan.FromMilliseconds(Math.Max(5, _options.StableMilliseconds / 4)) : rescanEvery;
                using (var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct))
                {
                    timeout.CancelAfter(wait);
                    try { await _events.Reader.WaitToReadAsync(timeout.Token).ConfigureAwait(false); }
                    catch (OperationCanceledException) when (!ct.IsCancellationRequested) { }
                }
                while (_events.Reader.TryRead(out var ev))
                    await ConsiderAsync(ev.Path, ev.Renamed, ct).ConfigureAwait(false);
                foreach (string path in _pending.Keys.ToArray())
                    await ConsiderAsync(path, renamed: false, ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested) { break; }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                _log.LogError("Inbox scan failed: {Error}; retrying", e.Message);
                try { await Task.Delay(rescanEvery, ct).ConfigureAwait(false); } catch (OperationCanceledException) { break; }
            }
        }
    }

    private async Task ConsiderAsync(string path, bool renamed, CancellationToken ct)
    {
        string name = Path.GetFileName(path);
        if (IsTemporaryName(name) || _inFlight.ContainsKey(path)) { _pending.Remove(path); return; }
        if (!string.Equals(Path.GetDirectoryName(path), _options.Inbox, StringComparison.Ordinal)) return;
        var info = new FileInfo(path);
        if (!info.Exists) { _pending.Remove(path); return; }
        long size = info.Length;
        DateTime mtime = info.LastWriteTimeUtc;
        bool complete = renamed;
        if (!complete)
        {
            if (_pending.TryGetValue(path, out var seen) && seen.Size == size && seen.Mtime == mtime)
                complete = Stopwatch.GetElapsedTime(seen.Since).TotalMilliseconds >= _options.StableMilliseconds;
            else
            {
                // A file last written long enough ago is complete already (e.g. present when the daemon started).
                if ((DateTime.UtcNow - mtime).TotalMilliseconds >= _options.StableMilliseconds && size > 0) complete = true;
                else { _pending[path] = (size, mtime, Stopwatch.GetTimestamp()); return; }
            }
        }
        if (!complete) return;
        _pending.Remove(path);
        if (!_inFlight.TryAdd(path, 0)) return;
        long landed = Stopwatch.GetTimestamp();
        CaptureItem item;
        if (size > _options.MaxFileBytes)
        {
            var big = new CaptureItem(path, [], "inbox", mtime, landed);
            _disposition.Quarantine(big, "-", "TooLarge", $"{size} bytes exceeds Qana:MaxFileBytes ({_options.MaxFileBytes})");
            Forget(path);
            return;
        }
        byte[] bytes;
        try { bytes = await File.ReadAllBytesAsync(path, ct).ConfigureAwait(false); }
        catch (FileNotFoundException) { Forget(path); return; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            _log.LogWarning("Cannot read {File}: {Error}; will retry on the next rescan", path, e.Message);
            Forget(path);
            return;
        }
        string source = name.StartsWith(CameraTrigger.FilePrefix, StringComparison.Ordinal) ? "camera" : "inbox";
        item = new CaptureItem(path, bytes, source, mtime, landed);
        // Backpressure: waits here while the pipeline is full (by count or by bytes).
        await _output.WriteAsync(item, ct).ConfigureAwait(false);
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        if (_fsw is not null) { _fsw.EnableRaisingEvents = false; _fsw.Dispose(); }
        if (_loop is not null) { try { await _loop.ConfigureAwait(false); } catch (OperationCanceledException) { } }
        _stop.Dispose();
    }
}
