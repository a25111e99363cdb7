using System.Collections.Concurrent;
using System.Diagnostics;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using QanaEdge.Daemon.Configuration;
using QanaEdge.Daemon.Hosting;

namespace QanaEdge.Daemon.Capture;

/// <summary>
/// Watches the inbox with a FileSystemWatcher plus a periodic full rescan (inotify can overflow or miss files that
/// were there before the daemon started). A file counts only when complete: either it was renamed into its name from a
/// temporary one (leading '.', or .tmp/.part/.partial/.crdownload suffix: those names are never taken), or its size and
/// time stamp have not changed for StableMilliseconds. Complete files are read and written to the capture channel;
/// when the channel is full the watcher waits (backpressure) instead of reading more, and the file events that come
/// meanwhile wait one per path, however many there are. A path in flight is not taken
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
    /// <summary>
    /// Paths with file events not yet looked at, in the order of their first event; <see cref="_queued"/> holds each
    /// once, with whether one of its events was a rename from a temporary name (a rescan that looks at the path first
    /// takes it out of the set, and the queue's entry is then passed over). Events of a path already waiting
    /// coalesce: while the capture queue is full the watcher waits, and a writer appending to its files makes an event
    /// per write, so a queue of events grew without bound (4,004 for two files of 2,000 writes each).
    /// </summary>
    private readonly ConcurrentQueue<string> _eventPaths = new();
    private readonly ConcurrentDictionary<string, bool> _queued = new(StringComparer.Ordinal);
    /// <summary>Wakes the loop when a path is queued; one signal stands for any number of them.</summary>
    private readonly Channel<bool> _wake = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite, SingleReader = true });
    /// <summary>Paths handed to the pipeline and not yet acknowledged: a rescan must not queue them again.</summary>
    private readonly ConcurrentDictionary<string, byte> _inFlight = new(StringComparer.Ordinal);
    /// <summary>Files seen but not yet stable: path → (size, mtime, first seen at).</summary>
    private readonly Dictionary<string, (long Size, DateTime Mtime, long Since)> _pending = new(StringComparer.Ordinal);
    /// <summary>
    /// Paths not to take again before a time: their file could not be read, moved or quarantined (a full or read-only
    /// disk, a permission), or looked incomplete. path → (not before, the pause that led there, doubled on each repeat).
    /// </summary>
    private readonly ConcurrentDictionary<string, (long NotBefore, TimeSpan Pause)> _deferred = new(StringComparer.Ordinal);
    private FileSystemWatcher? _fsw;
    private readonly CancellationTokenSource _stop = new();
    private Task? _loop;

    public InboxWatcher(QanaOptions options, CaptureQueue output, CaptureDisposition disposition, ILogger<InboxWatcher> log)
    {
        _options = options; _output = output; _disposition = disposition; _log = log;
    }

    /// <summary>Paths with file events not yet looked at (at most one entry per path).</summary>
    public int QueuedFileEvents => _queued.Count;

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
        _fsw.Created += (_, e) => Queue(e.FullPath, renamed: false);
        _fsw.Changed += (_, e) => Queue(e.FullPath, renamed: false);
        _fsw.Renamed += (_, e) => Queue(e.FullPath, IsTemporaryName(Path.GetFileName(e.OldFullPath)));
        _fsw.Error += (_, e) => _log.LogWarning("Inbox watcher error ({Error}); the periodic rescan covers it", e.GetException().Message);
        _fsw.EnableRaisingEvents = true;
        _loop = Task.Run(() => LoopAsync(_stop.Token));
        _log.LogInformation("Watching inbox {Inbox} (rescan every {Rescan} s, stable after {Stable} ms)", _options.Inbox, _options.RescanSeconds, _options.StableMilliseconds);
    }

    /// <summary>
    /// Called when the pipeline is done with an inbox path. <paramref name="settled"/>: acknowledged, quarantined, or
    /// left because another file took its name; the path is looked at again now, since a file renamed over it while it
    /// was in flight was ignored then. Not settled: the file is still there because it could not be moved or
    /// quarantined, or it looked incomplete; taking it again at once would fail the same way, in a loop (one image was
    /// classified 224 times in 6 s against a full done folder), so it waits a pause that doubles up to 5 minutes.
    /// </summary>
    public void Release(string path, bool settled)
    {
        if (settled) _deferred.TryRemove(path, out _);
        else Defer(path);
        Forget(path);
        if (settled) Queue(path, renamed: false);
    }

    /// <summary>Queues a path to be looked at, once however many events it has; a rename from a temporary name sticks.</summary>
    private void Queue(string path, bool renamed)
    {
        // Each entry of the set has one in the queue, added after it. The loop may take the path out of the set at any
        // moment, so a rename is marked only on an entry still there; one taken meanwhile is added again.
        while (!_queued.TryAdd(path, renamed))
        {
            if (!renamed || _queued.TryUpdate(path, true, comparisonValue: false) || _queued.TryGetValue(path, out bool marked) && marked)
            {
                _wake.Writer.TryWrite(true);
                return;
            }
        }
        _eventPaths.Enqueue(path);
        _wake.Writer.TryWrite(true);
    }

    /// <summary>The first pause after a failure; doubled on each repeat, up to <see cref="MaxPause"/>.</summary>
    public static readonly TimeSpan FirstPause = TimeSpan.FromSeconds(5), MaxPause = TimeSpan.FromMinutes(5);

    private void Defer(string path)
    {
        TimeSpan pause = _deferred.TryGetValue(path, out var d) ? TimeSpan.FromTicks(Math.Min(d.Pause.Ticks * 2, MaxPause.Ticks)) : FirstPause;
        _deferred[path] = (Stopwatch.GetTimestamp() + (long)(pause.TotalSeconds * Stopwatch.Frequency), pause);
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
        int scanFailures = 0;
        while (!ct.IsCancellationRequested)
        {
            try
            {
                if (Stopwatch.GetElapsedTime(nextRescan) >= TimeSpan.Zero || nextRescan == 0)
                {
                    // A path with an event waiting is looked at with it, rename included: when the loop was held up
                    // (a full queue, a cold start), the rescan may come first, and the event, second, would find the
                    // capture in flight, its rename lost; a capture cut short would then look unfinished for 60 s.
                    bool undecodable = false;
                    foreach (string path in Directory.EnumerateFiles(_options.Inbox).Order(StringComparer.Ordinal))
                    {
                        undecodable |= path.Contains('\uFFFD', StringComparison.Ordinal);
                        await ConsiderAsync(path, _queued.TryRemove(path, out bool renamed) && renamed, ct).ConfigureAwait(false);
                    }
                    if (undecodable) RenameUndecodable();
                    foreach (string gone in _deferred.Keys.Where(p => !File.Exists(p)).ToArray()) _deferred.TryRemove(gone, out _);
                    nextRescan = Stopwatch.GetTimestamp() + (long)(rescanEvery.TotalSeconds * Stopwatch.Frequency);
                    if (scanFailures > 0) _log.LogInformation("Inbox scan works again after {Failures} failures", scanFailures);
                    scanFailures = 0;
                }
                // Wake for events, or to re-check files waiting to become stable, or for the next rescan.
                TimeSpan wait = _pending.Count > 0 ? TimeSpan.FromMilliseconds(Math.Max(5, _options.StableMilliseconds / 4)) : rescanEvery;
                using (var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct))
                {
                    timeout.CancelAfter(wait);
                    try
                    {
                        await _wake.Reader.WaitToReadAsync(timeout.Token).ConfigureAwait(false);
                        _wake.Reader.TryRead(out _);
                    }
                    catch (OperationCanceledException) when (!ct.IsCancellationRequested) { }
                }
                // Removed from the set before it is looked at: an event that comes meanwhile queues the path again.
                while (_eventPaths.TryDequeue(out string? path))
                    if (_queued.TryRemove(path, out bool renamed))
                        await ConsiderAsync(path, renamed, ct).ConfigureAwait(false);
                foreach (string path in _pending.Keys.ToArray())
                    await ConsiderAsync(path, renamed: false, ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested) { break; }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // A missing or unreadable inbox (removable media taken out, a permission) fails every rescan for as long
                // as it lasts: an error every RescanSeconds flooded the journal, so the 1st, 10th, 100th ... in a row.
                scanFailures++;
                if (Logging.IsReported(scanFailures))
                    _log.LogError("Inbox scan failed ({Failures} in a row; reported at 1, 10, 100 ...): {Error}; retrying every {Seconds} s", scanFailures, e.Message, rescanEvery.TotalSeconds);
                try { await Task.Delay(rescanEvery, ct).ConfigureAwait(false); } catch (OperationCanceledException) { break; }
            }
        }
    }


    /// <summary>
    /// Renames the inbox entries whose names are not UTF-8, which .NET cannot open (<see cref="UndecodableNames"/>), once
    /// they are written as a capture is taken to be (<see cref="ConsiderAsync"/>); the rename brings them back as
    /// captures renamed in. One that cannot be renamed is logged once.
    /// </summary>
    private void RenameUndecodable()
    {
        // The age either way: a file copied with its times kept, onto a board whose clock is behind (no RTC, before NTP),
        // was written in the clock's future.
        foreach (var (shown, renamed, error) in UndecodableNames.RenameAll(_options.Inbox, (size, age) => WrittenLongAgo(size, age.Duration()), IsTemporaryName))
        {
            if (renamed is not null)
                _log.LogWarning("{Name} in the inbox has a name that is not UTF-8 (written in another code page?), which the daemon cannot open: renamed {Renamed}, its bytes read as Windows-1252",
                    shown, renamed);
            else if (_unrenamable.TryAdd(shown, 0))
                _log.LogError("{Name} in the inbox has a name that is not UTF-8 and cannot be renamed ({Error}): it is not classified until it is renamed by hand", shown, error);
        }
    }

    // Names not UTF-8 that could not be renamed, each logged once.
    private readonly ConcurrentDictionary<string, byte> _unrenamable = new(StringComparer.Ordinal);

    /// <summary>
    /// How long an empty file must stay empty before it counts as complete (and is quarantined as Empty), unless it
    /// was renamed in: a writer may create a file well before it writes (a camera app, a network copy).
    /// </summary>
    public static readonly TimeSpan EmptyFileGrace = TimeSpan.FromSeconds(60);

    /// <summary>Whether a file last written <paramref name="age"/> ago is complete by its time stamp alone.</summary>
    private bool WrittenLongAgo(long size, TimeSpan age) =>
        size > 0 ? age.TotalMilliseconds >= _options.StableMilliseconds : age >= EmptyFileGrace;

    private async Task ConsiderAsync(string path, bool renamed, CancellationToken ct)
    {
        string name = Path.GetFileName(path);
        if (IsTemporaryName(name) || _inFlight.ContainsKey(path)) { _pending.Remove(path); return; }
        if (!string.Equals(Path.GetDirectoryName(path), _options.Inbox, StringComparison.Ordinal)) return;
        var info = new FileInfo(path);
        if (!info.Exists) { _pending.Remove(path); _deferred.TryRemove(path, out _); return; }
        if (_deferred.TryGetValue(path, out var deferred) && Stopwatch.GetTimestamp() < deferred.NotBefore) { _pending.Remove(path); return; }
        long size = info.Length;
        DateTime mtime = info.LastWriteTimeUtc;
        // Only what could be something else is asked of the kernel: a FIFO, device or socket has length 0, and a link
        // (to one) is a reparse point to .NET; a regular file with content costs no extra call on every look.
        if ((size == 0 || info.Attributes.HasFlag(FileAttributes.ReparsePoint)) && FileKind.IsRegularFile(path) == false)
        {
            // Never read: opening a FIFO blocks the inbox until a writer comes, a device may never end. Its length of 0
            // would otherwise make it wait out the empty-file grace first.
            _pending.Remove(path);
            if (_inFlight.TryAdd(path, 0))
                Unread(new CaptureItem(path, [], "inbox", mtime, Stopwatch.GetTimestamp()), "NotAFile", "not a regular file (a FIFO, device or socket, or a link to one)");
            return;
        }
        bool complete = renamed;
        if (!complete)
        {
            // The age either way, as for undecodable names: an empty file written in the clock's future never counted
            // as complete, and kept the loop waking every StableMilliseconds / 4 until the clock passed its time stamp.
            bool old = WrittenLongAgo(size, (DateTime.UtcNow - mtime).Duration());
            if (_pending.TryGetValue(path, out var seen) && seen.Size == size && seen.Mtime == mtime)
                complete = size > 0 ? Stopwatch.GetElapsedTime(seen.Since).TotalMilliseconds >= _options.StableMilliseconds : old;
            else
            {
                // A file last written long enough ago is complete already (e.g. present when the daemon started).
                if (old) complete = true;
                else { _pending[path] = (size, mtime, Stopwatch.GetTimestamp()); return; }
            }
        }
        if (!complete) return;
        _pending.Remove(path);
        if (!_inFlight.TryAdd(path, 0)) return;
        long landed = Stopwatch.GetTimestamp();
        byte[]? bytes;
        try { bytes = await ReadAtMostAsync(path, _options.MaxFileBytes, ct).ConfigureAwait(false); }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException) { Forget(path); return; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Defer(path);
            _log.LogWarning("Cannot read {File}: {Error}; tried again in {Seconds:0} s", path, e.Message, _deferred[path].Pause.TotalSeconds);
            Forget(path);
            return;
        }
        if (bytes is null)
        {
            Unread(new CaptureItem(path, [], "inbox", mtime, landed), "TooLarge", $"more than Qana:MaxFileBytes ({_options.MaxFileBytes}) bytes");
            return;
        }
        var item = new CaptureItem(path, bytes, "inbox", mtime, landed, renamed);
        if (CameraTrigger.IsOwnFrame(item)) item = item with { Source = "camera" };   // the hash it took goes with the copy
        // Backpressure: waits here while the pipeline is full (by count or by bytes).
        await _output.WriteAsync(item, ct).ConfigureAwait(false);
    }

    /// <summary>Quarantines a capture that is not read (too large, not a file); if that fails, tries again after a pause.</summary>
    private void Unread(CaptureItem item, string reason, string message)
    {
        bool settled = _disposition.Quarantine(item, "-", reason, message);
        if (!settled) Defer(item.Path);
        Forget(item.Path);
    }

    /// <summary>
    /// The file's bytes, or null when it holds more than <paramref name="limit"/>. Never more than the length it has
    /// when opened: a file that grows meanwhile is not read without end (what was read is checked against the file by
    /// hash before it is moved, so a file that changed is taken again).
    /// </summary>
    private static async Task<byte[]?> ReadAtMostAsync(string path, long limit, CancellationToken ct)
    {
        await using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, bufferSize: 1, useAsync: true);
        long length = stream.Length;
        if (length > limit) return null;
        var buffer = new byte[length];
        int filled = 0, read;
        while (filled < buffer.Length && (read = await stream.ReadAsync(buffer.AsMemory(filled), ct).ConfigureAwait(false)) > 0) filled += read;
        return filled == buffer.Length ? buffer : buffer[..filled];
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        if (_fsw is not null) { _fsw.EnableRaisingEvents = false; _fsw.Dispose(); }
        if (_loop is not null) { try { await _loop.ConfigureAwait(false); } catch (OperationCanceledException) { } }
        _stop.Dispose();
    }
}
