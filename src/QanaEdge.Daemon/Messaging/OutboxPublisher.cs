using System.Diagnostics;
using Microsoft.Extensions.Logging;
using QanaEdge.Daemon.Configuration;
using QanaEdge.Daemon.Hosting;
using QanaEdge.Daemon.Storage;

namespace QanaEdge.Daemon.Messaging;

/// <summary>
/// Drains the LiteDB outbox to the broker at QoS 1, keeping up to MaxInflight publishes awaiting PUBACK, and deletes
/// an entry only after its PUBACK. When the link drops, entries in flight stay in the outbox and the drain restarts
/// from the oldest entry after reconnecting: a result may be sent twice (same result_id), never lost.
/// <para>
/// An entry the broker refuses (a PUBACK with an error reason, e.g. NotAuthorized or PacketTooLarge, or the link's refusal
/// to send one over the broker's announced Maximum Packet Size) does not stop the
/// drain: it waits 1, 2, 4 ... s (at most 60 s) while the entries behind it go on, and after MaxRefusals refusals
/// it is moved to the <c>deadletters</c> collection with the broker's reason (<see cref="ResultStore.DeadLetter"/>).
/// Dead letters go back to the outbox at the next start, so a broker fixed in the meantime gets them.
/// </para>
/// </summary>
public sealed class OutboxPublisher : IAsyncDisposable
{
    private readonly ResultStore _store;
    private readonly MqttLink _link;
    private readonly MqttOptions _options;
    private readonly ILogger<OutboxPublisher> _log;
    private readonly SemaphoreSlim _wake = new(0);
    private readonly CancellationTokenSource _stop = new();
    private Task? _loop;
    private long _published;
    /// <summary>
    /// Outbox id → refusals so far, the Stopwatch time before which it is not sent again, and the last pass over the
    /// outbox that read it (one read in no pass is no longer in the outbox: see <see cref="UntilNextLook"/>).
    /// </summary>
    private readonly Dictionary<long, (int Count, long RetryAt, long Pass)> _refused = [];
    // Passes over the outbox from its start: each drain's first, and each one after an idle wait.
    private long _pass;
    /// <summary>
    /// Outbox ids whose PUBACK came but whose deletion failed (a full or read-only disk): not sent again, and deleted
    /// with the next deletion. Only the drain, one at a time, touches it.
    /// </summary>
    private readonly HashSet<long> _undeleted = [];
    private int _deleteFailures;
    // The dead letters wait to be moved back to the outbox (see RequeueDeadLetters).
    private bool _requeuePending;
    private int _requeueFailures;

    public OutboxPublisher(ResultStore store, MqttLink link, MqttOptions options, ILogger<OutboxPublisher> log)
    {
        _store = store; _link = link; _options = options; _log = log;
        _link.Connected += Wake;
        _store.Queued += Wake;
    }

    /// <summary>PUBACKs received since start.</summary>
    public long Published => Interlocked.Read(ref _published);

    /// <summary>Called with (result id, landed timestamp) after each PUBACK: latency measurement hook.</summary>
    public event Action<string, long>? Acknowledged;

    /// <summary>Raised when entries move to the dead letters or back (the daemon's status reports how many there are).</summary>
    public event Action? DeadLettersChanged;

    public void Wake()
    {
        if (_wake.CurrentCount == 0) _wake.Release();
    }

    public void Start()
    {
        _requeuePending = true;
        RequeueDeadLetters();
        int backlog = _store.OutboxCount();
        if (backlog > 0) _log.LogInformation("Outbox holds {Count} results from before; they will be sent first", backlog);
        _loop = Task.Run(() => LoopAsync(_stop.Token));
    }

    /// <summary>
    /// Moves the dead letters back to the outbox, once per start. A store that cannot write (a full disk) no longer stops
    /// the start: the move failed out of <see cref="Start"/>, the daemon exited, and systemd restarted it into the same
    /// failure, so the retention that frees the disk never ran. It is tried again by the loop and the drain
    /// (<see cref="RequeueRetry"/>) until it works; the failures are logged at the 1st, 10th, 100th ... in a row.
    /// </summary>
    private void RequeueDeadLetters()
    {
        if (!Volatile.Read(ref _requeuePending)) return;
        int requeued;
        try { requeued = _store.RequeueDeadLetters(); }
        catch (Exception e) when (ResultStore.IsStorageFailure(e))
        {
            int failures = Interlocked.Increment(ref _requeueFailures);
            if (Logging.IsReported(failures))
                _log.LogError("Dead letters not moved back to the outbox ({Failures} in a row; reported at 1, 10, 100 ...): the store failed ({Error}); tried again every {Seconds:0} s",
                    failures, e.Message, RequeueRetry.TotalSeconds);
            return;
        }
        Volatile.Write(ref _requeuePending, false);
        if (_requeueFailures > 0) _log.LogWarning("Dead letters moved back to the outbox after {Failures} failed tries", _requeueFailures);
        if (requeued > 0)
        {
            _log.LogWarning("{Count} dead letters (results the broker refused) are back in the outbox, to be sent again", requeued);
            DeadLettersChanged?.Invoke();
        }
    }

    /// <summary>How often a move of the dead letters back to the outbox that the store refused is tried again.</summary>
    public static readonly TimeSpan RequeueRetry = TimeSpan.FromSeconds(5);

    private async Task LoopAsync(CancellationToken ct)
    {
        TimeSpan min = TimeSpan.FromSeconds(_options.ReconnectMinSeconds), max = TimeSpan.FromSeconds(_options.ReconnectMaxSeconds);
        int failures = 0;
        while (!ct.IsCancellationRequested)
        {
            long published = Published;
            try
            {
                RequeueDeadLetters();
                LinkSession session = await _link.WaitConnectedAsync(ct).ConfigureAwait(false);
                await DrainAsync(session, ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested) { break; }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                TimeSpan pause = min;
                // The link logs its own drops; a drop during a drain is expected and needs no second warning.
                if (e is MqttLinkDownException) _log.LogInformation("Outbox drain paused: {Error}; unacknowledged results stay queued", e.Message);
                else
                {
                    // A drain that fails with the link up (an outbox the store cannot read: a disk gone read-only or
                    // failing) fails again at once. It was retried every ReconnectMinSeconds for ever, with a warning
                    // each time; the pause now doubles up to ReconnectMaxSeconds until a drain gets a PUBACK again.
                    failures = Published != published ? 1 : failures + 1;
                    pause = TimeSpan.FromTicks(Math.Min(max.Ticks, min.Ticks << Math.Min(failures - 1, 20)));
                    if (Logging.IsReported(failures))
                        _log.LogWarning("Outbox drain interrupted ({Failures} in a row; reported at 1, 10, 100 ...): {Error}; unacknowledged results stay queued, next try in {Seconds:0.##} s",
                            failures, e.Message, pause.TotalSeconds);
                }
                try { await Task.Delay(pause, ct).ConfigureAwait(false); } catch (OperationCanceledException) { break; }
            }
        }
    }

    /// <summary>
    /// Sends everything in the outbox on one session; returns when the session is gone, throws when a publish failed.
    /// Every wait here ends when the session does (its Lost token), so a dead connection never holds the drain.
    /// </summary>
    private async Task DrainAsync(LinkSession session, CancellationToken stop)
    {
        using var scope = CancellationTokenSource.CreateLinkedTokenSource(stop, session.Lost);
        CancellationToken ct = scope.Token;
        long cursor = 0, pass = ++_pass;
        // Never more in flight than the broker takes (its Receive Maximum); the link holds any publish beyond it too.
        int most = Math.Min(_options.MaxInflight, session.ReceiveMaximum ?? int.MaxValue);
        var inflight = new List<Task>(most);
        var acked = new List<long>(most);
        // Entries whose publish was on the connection when it ended (see CountClosedOn).
        var cutOff = new List<(OutboxEntry Entry, long Pass)>();
        using var gate = new SemaphoreSlim(most);
        Exception? failure = null;
        try
        {
            while (!ct.IsCancellationRequested)
            {
                List<OutboxEntry> entries = _store.ReadOutbox(cursor, most * 4);
                if (entries.Count == 0)
                {
                    // Nothing new. With publishes in flight, look again soon (their PUBACKs need deleting) and keep the
                    // cursor: re-reading from the start would send them a second time. With none in flight, wait for
                    // the store to queue something (or the next refused entry's turn), then re-read from the start.
                    bool idle = inflight.Count == 0;
                    await _wake.WaitAsync(idle ? UntilNextLook(pass) : TimeSpan.FromMilliseconds(20), ct).ConfigureAwait(false);
                    if (idle) { cursor = 0; pass = ++_pass; RequeueDeadLetters(); }
                }
                foreach (OutboxEntry entry in entries)
                {
                    cursor = entry.Id;
                    if (Deferred(entry.Id, pass) || _undeleted.Contains(entry.Id)) continue;
                    await gate.WaitAsync(ct).ConfigureAwait(false);
                    if (Volatile.Read(ref failure) is not null) { gate.Release(); break; }
                    inflight.Add(PublishOneAsync(entry, pass));
                }
                // The next entries are read without waiting for these PUBACKs: one slow PUBACK must not hold back the
                // results behind it (MaxInflight still bounds what is in flight).
                inflight.RemoveAll(static t => t.IsCompleted);
                DeleteAcked();
                if (Volatile.Read(ref failure) is { } failed)
                {
                    await Task.WhenAll(inflight).ConfigureAwait(false);
                    throw failed;
                }
            }
        }
        catch (OperationCanceledException) when (!stop.IsCancellationRequested)
        {
            // The session ended. Publishes still in flight on it end too (the link cancels them with the session).
        }
        finally
        {
            // Whatever was acknowledged before an interruption is deleted; the rest is resent on the next session.
            try { await Task.WhenAll(inflight).ConfigureAwait(false); } catch (Exception) { }
            DeleteAcked();
            if (!stop.IsCancellationRequested) CountClosedOn(cutOff);
        }

        void DeleteAcked()
        {
            lock (acked)
            {
                _undeleted.UnionWith(acked);
                acked.Clear();
            }
            DeleteUndeleted();
        }

        async Task PublishOneAsync(OutboxEntry entry, long readInPass)
        {
            try
            {
                await _link.PublishAsync(session, entry.Topic, entry.Payload, retain: false, stop).ConfigureAwait(false);
                lock (acked) acked.Add(entry.Id);
                lock (_refused) _refused.Remove(entry.Id);
                Interlocked.Increment(ref _published);
                Acknowledged?.Invoke(entry.ResultId, entry.LandedTimestamp);
            }
            catch (MqttPublishRefusedException e)
            {
                // The broker answered, so the connection is fine: only this entry waits (or leaves the drain).
                Refused(entry, e.Message, readInPass);
            }
            catch (Exception e) when (e is not OperationCanceledException || !stop.IsCancellationRequested)
            {
                if (e is MqttLinkDownException { WhileInFlight: true }) lock (cutOff) cutOff.Add((entry, readInPass));
                Interlocked.CompareExchange(ref failure, e, null);
            }
            finally { gate.Release(); }
        }
    }

    /// <summary>
    /// A connection that ended while entries were in flight puts the oldest of them back to wait its turn, 1, 2, 4 ... s
    /// up to a minute, while the entries behind it go on. A broker may answer a message it will not take by closing the
    /// connection (a limit it did not announce, an ACL that disconnects): the publish then failed as a lost link, and the
    /// drain, which restarts from the oldest entry, sent that entry first on every new connection, for ever, with the link
    /// reconnecting several times a second and nothing behind it delivered. It is not made a dead letter, as a refusal is:
    /// a link that drops for its own reasons (a clinic's mobile network) looks the same, and a result shelved until the
    /// next start could wait for weeks. Such an entry costs one reconnection a minute at most. Only the oldest is counted,
    /// so that a broker restart with many publishes in flight puts back one entry once.
    /// </summary>
    private void CountClosedOn(List<(OutboxEntry Entry, long Pass)> cutOff)
    {
        if (cutOff.Count == 0) return;
        var (oldest, pass) = cutOff.MinBy(c => c.Entry.Id);
        Refused(oldest, "the connection closed before its PUBACK", pass, mayDeadLetter: false);
    }

    /// <summary>
    /// Deletes the acknowledged entries. A deletion the disk refuses no longer ends the drain: it did, and the next
    /// drain 0.2 s later sent every one of them again, and again, with a warning each time, for as long as the disk
    /// stayed full. They now stay out of the drain and are deleted with a later deletion (a restart before that sends
    /// them once more, under their own ids); the failures are logged at the 1st, 10th, 100th ... in a row.
    /// </summary>
    private void DeleteUndeleted()
    {
        if (_undeleted.Count == 0) return;
        try { _store.DeleteOutbox(_undeleted); }
        catch (Exception e) when (ResultStore.IsStorageFailure(e))
        {
            int failures = ++_deleteFailures;
            if (Logging.IsReported(failures))
                _log.LogWarning("Cannot delete {Count} acknowledged outbox entries ({Failures} in a row; reported at 1, 10, 100 ...): {Error}; they are not sent again, and their deletion is tried again",
                    _undeleted.Count, failures, e.Message);
            return;
        }
        if (_deleteFailures > 0) _log.LogInformation("Acknowledged outbox entries deleted again after {Failures} failed tries", _deleteFailures);
        _deleteFailures = 0;
        _undeleted.Clear();
    }


    /// <summary>
    /// How long an idle drain, at the end of <paramref name="pass"/>, waits before it reads the outbox again unasked:
    /// until the first refused entry may be sent again (at once when its time came while others were in flight), at
    /// most a second while acknowledged entries wait for their deletion, else <see cref="IdleLook"/>. The store says
    /// when it queues an entry (<see cref="ResultStore.Queued"/>), so the look is only a safety net; it was once a
    /// second, a read of the store and a wake-up of the process every second of a device's day at rest. A refused entry
    /// this pass did not read is no longer in the outbox (lost to a store rebuild) and is forgotten: its time would
    /// have the drain look again at once, for ever.
    /// </summary>
    private TimeSpan UntilNextLook(long pass)
    {
        long now = Stopwatch.GetTimestamp(), next = long.MaxValue;
        lock (_refused)
            foreach (var (id, r) in _refused)
            {
                if (r.Pass != pass) _refused.Remove(id);
                else if (r.RetryAt < next) next = r.RetryAt;
            }
        TimeSpan look = _undeleted.Count > 0 ? TimeSpan.FromSeconds(1) : Volatile.Read(ref _requeuePending) ? RequeueRetry : IdleLook;
        if (next == long.MaxValue) return look;
        // Whole milliseconds, rounded up: a wait of under one is none, and the entry would not be due yet.
        double ms = Math.Ceiling(Math.Max(0, Stopwatch.GetElapsedTime(now, next).TotalMilliseconds));
        return TimeSpan.FromMilliseconds(Math.Min(look.TotalMilliseconds, ms));
    }

    /// <summary>The longest an idle drain waits without being woken.</summary>
    public static readonly TimeSpan IdleLook = TimeSpan.FromMinutes(1);

    /// <summary>Whether a refused entry, read in <paramref name="pass"/>, waits for its time still.</summary>
    private bool Deferred(long id, long pass)
    {
        lock (_refused)
        {
            if (!_refused.TryGetValue(id, out var r)) return false;
            _refused[id] = r with { Pass = pass };
            return Stopwatch.GetTimestamp() < r.RetryAt;
        }
    }

    /// <summary>
    /// Counts a refusal of <paramref name="entry"/>: it waits 1, 2, 4 ... s (at most 60), or after MaxRefusals becomes a
    /// dead letter when <paramref name="mayDeadLetter"/> (a connection that closed on it only waits: see CountClosedOn).
    /// </summary>
    private void Refused(OutboxEntry entry, string reason, long readInPass, bool mayDeadLetter = true)
    {
        int count;
        lock (_refused) count = (_refused.TryGetValue(entry.Id, out var r) ? r.Count : 0) + 1;
        if (mayDeadLetter && count >= _options.MaxRefusals)
        {
            try
            {
                _store.DeadLetter(entry, reason, count);
                lock (_refused) _refused.Remove(entry.Id);
                _log.LogError("Outbox entry {ResultId} on {Topic} refused {Count} times ({Reason}): moved to the dead letters (LiteDB collection deadletters); it is sent again after a restart",
                    entry.ResultId, entry.Topic, count, reason);
                DeadLettersChanged?.Invoke();
                return;
            }
            catch (Exception e) when (ResultStore.IsStorageFailure(e))
            {
                _log.LogError("Outbox entry {ResultId} on {Topic} refused {Count} times, and cannot be moved to the dead letters: {Error}; it stays in the outbox", entry.ResultId, entry.Topic, count, e.Message);
            }
        }
        TimeSpan wait = TimeSpan.FromSeconds(Math.Min(60, Math.Pow(2, Math.Min(count - 1, 6))));
        lock (_refused) _refused[entry.Id] = (count, Stopwatch.GetTimestamp() + (long)(wait.TotalSeconds * Stopwatch.Frequency), readInPass);
        if (mayDeadLetter)
            _log.LogWarning("Outbox entry {ResultId} on {Topic} refused ({Reason}), {Count} of {Max}; sent again in {Seconds:0} s", entry.ResultId, entry.Topic, reason, count, _options.MaxRefusals, wait.TotalSeconds);
        // A minute apart for as long as a broker closes the connection on it: the 1st, 10th, 100th ... are warnings.
        else if (Logging.IsReported(count))
            _log.LogWarning("Outbox entry {ResultId} on {Topic}: {Reason} ({Count} in a row; reported at 1, 10, 100 ...); sent again in {Seconds:0} s while the entries behind it go on",
                entry.ResultId, entry.Topic, reason, count, wait.TotalSeconds);
    }

    public async ValueTask DisposeAsync()
    {
        _link.Connected -= Wake;
        _store.Queued -= Wake;
        _stop.Cancel();
        if (_loop is not null) { try { await _loop.ConfigureAwait(false); } catch (OperationCanceledException) { } }
        _stop.Dispose();
    }
}
