using LiteDB;

namespace QanaEdge.Daemon.Storage;

/// <summary>A result ready to be stored, with its MQTT payload already rendered.</summary>
public sealed record StoredResult(
    string ResultId,
    string ImageSha256,
    string Label,
    float Confidence,
    bool Refer,
    bool Tiled,
    string ModelId,
    string ModelVersion,
    double LatencyMs,
    double? EnergyMillijoules,
    DateTime CapturedAt,
    string Source,
    byte[] Payload,
    long LandedTimestamp,
    sbyte[]? HeadInput = null,
    string? Backbone = null);

/// <summary>
/// A result a clinician labelled, with the head input its model computed and the lesion the label named, if any (see
/// <see cref="ResultStore.LabelledCases"/>).
/// </summary>
public sealed record LabelledCase(string ResultId, sbyte[] HeadInput, string Label, string? LesionId = null);

/// <summary>One run of the on-device readout learner, as the store records it.</summary>
public sealed record LearningAttempt(string Backbone, int Cases, string Outcome, string Reason, DateTime At);

/// <summary>What <see cref="ResultStore.StoreLabel"/> did with a clinician label.</summary>
public enum LabelKept
{
    /// <summary>Stored: a label of a result of this device.</summary>
    Known,
    /// <summary>Stored: a label of a result this device does not have.</summary>
    Unknown,
    /// <summary>Not stored: a label of a result this device does not have, with the most such labels already stored.</summary>
    NotKept,
}

/// <summary>What one batch of <see cref="ResultStore.PruneResults"/> did: results deleted, and results it looked at and kept.</summary>
public readonly record struct PruneBatch(int Deleted, int Kept);

/// <summary>An outbox entry waiting for its PUBACK.</summary>
public sealed record OutboxEntry(long Id, string ResultId, string Topic, byte[] Payload, long LandedTimestamp);

/// <summary>An outbox entry the broker refused again and again, kept with the broker's reason (see <see cref="ResultStore.DeadLetter"/>).</summary>
public sealed record DeadLetterEntry(string ResultId, string Topic, byte[] Payload, string Reason, int Refusals, DateTime At);

/// <summary>
/// The daemon's LiteDB file: results, the outbox and its dead letters, clinician feedback, the update log and the readout learner's log. Only the BsonDocument API
/// is used (no reflection mapper: Native-AOT clean). All access is serialised through one lock because a LiteDB
/// transaction belongs to the thread that began it.
/// <para>
/// A write that fails on the disk (full, or an I/O error) leaves LiteDB 5's instance unusable: its next call blocks
/// or fails again even after space has been freed (LiteDB issue #2821). So after such a failure (or any other
/// LiteException) the instance is closed, and the next call opens the file again, which replays whatever LiteDB had
/// committed to its log. Every call then fails cleanly while the disk stays full (the caller keeps its captures and
/// retries) and works again as soon as it is not. Callers recognise such a failure with <see cref="IsStorageFailure"/>.
/// </para>
/// </summary>
public sealed class ResultStore : IDisposable
{
    private readonly Lock _gate = new();
    private Database? _open;
    private bool _disposed;
    // The highest outbox id this store has issued or seen in a file it opened (under the lock; see Enqueue).
    private long _lastOutboxId;
    // An outbox entry was added by the call under way (under the lock; see Queued).
    private bool _queued;

    /// <summary>
    /// Opens the store, creating it when there is none. A file damaged by a power cut (an SD card's torn write) is
    /// rebuilt by LiteDB from what it can read (its auto-rebuild: the damaged file kept as NAME-backup.db, what could
    /// not be read listed in the _rebuild_errors collection). One that LiteDB cannot open even so is set aside as
    /// NAME.damaged-TIME, with its log, and a new store started. <see cref="Recovery"/> says which happened. Before, a
    /// damaged file threw at every start: the daemon crashed, and restarted, in a loop that classified nothing. A disk
    /// or permission failure is not damage: it is thrown, and nothing is set aside; nor is anything when the new store
    /// cannot be made (the damaged file is put back).
    /// </summary>
    public ResultStore(string path)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        DatabasePath = path;
        try { _open = OpenOrRebuild(); }
        catch (Exception e) when (IsDamage(e))
        {
            string folder = Path.GetDirectoryName(Path.GetFullPath(path))!;
            string aside = $"{path}.damaged-{DateTime.UtcNow:yyyyMMdd'T'HHmmss'Z'}";
            // LiteDB's write-ahead log (NAME-log.db) belongs to the damaged file: replayed into the new one, it would fail it.
            string logFile = Path.Combine(folder, Path.GetFileNameWithoutExtension(path) + "-log" + Path.GetExtension(path));
            File.Move(path, aside);
            bool hadLog = File.Exists(logFile);
            if (hadLog) File.Move(logFile, aside + "-log");
            try { _open = Opened(new Database(path)); }
            catch
            {
                File.Move(aside, path, overwrite: true);
                if (hadLog) File.Move(aside + "-log", logFile, overwrite: true);
                throw;
            }
            Recovery = $"{path} could not be opened ({e.GetType().Name}: {e.Message}), not even by LiteDB's rebuild: set aside as {aside}, "
                + "and a new store started; the results, labels and unsent messages in it are not in the new one";
        }
    }

    /// <summary>
    /// Opens the file; when LiteDB finds it damaged, once more: the failed open marks the file invalid, and the next one
    /// (with AutoRebuild) rebuilds it. A rebuild is said in <see cref="Recovery"/> and raised as <see cref="Recovered"/>.
    /// </summary>
    private Database OpenOrRebuild()
    {
        string folder = Path.GetDirectoryName(Path.GetFullPath(DatabasePath))!;
        string backups = Path.GetFileNameWithoutExtension(DatabasePath) + "-backup*" + Path.GetExtension(DatabasePath);
        var before = Directory.GetFiles(folder, backups).ToHashSet(StringComparer.Ordinal);
        Database db;
        try { db = Opened(new Database(DatabasePath)); }
        catch (Exception e) when (IsDamage(e)) { db = Opened(new Database(DatabasePath)); }
        string? fresh = Directory.GetFiles(folder, backups).FirstOrDefault(b => !before.Contains(b)), unfinished = null;
        // A rebuild whose requeue did not complete (a kill, or a full disk right after the rebuild's copy of the file):
        // at the next open its backup was no longer new, and the requeue was skipped for good.
        if (fresh is null)
        {
            try { unfinished = UnrequeuedBackup(db, before); }
            catch
            {
                Abandon(db.Db);
                throw;
            }
        }
        if ((fresh ?? unfinished) is { } backup)
        {
            int unread, requeued, topicless, readouts;
            try
            {
                unread = db.Db.CollectionExists(RebuildErrors) ? db.Db.GetCollection(RebuildErrors).Count() : 0;
                requeued = RequeueUndelivered(db, out topicless, out readouts);
            }
            catch
            {
                Abandon(db.Db);
                throw;
            }
            string queued = $"{requeued} results not known to be delivered were queued to be sent again"
                + (topicless > 0 ? $" ({topicless} more, stored before results kept their topic, could not be)" : "")
                + (readouts > 0 ? $", and {readouts} learned readout{(readouts == 1 ? "" : "s")} not known to be delivered" : "");
            Recovery = fresh is not null
                ? $"{DatabasePath} was damaged and LiteDB rebuilt it from what it could read, with {unread} errors reading its pages "
                    + $"(its {RebuildErrors} collection lists them); the damaged file is kept as {backup}; {queued}"
                : $"{DatabasePath} had been rebuilt by LiteDB (the damaged file is kept as {backup}; {unread} errors reading its pages, listed in its "
                    + $"{RebuildErrors} collection), but the results it may have lost were not queued again then (a stop or a store failure cut that short): {queued}";
            Recovered?.Invoke(Recovery);
        }
        return db;
    }

    /// <summary>The <c>meta</c> document whose <c>at</c> is when the last rebuild's results were queued again (<see cref="RequeueUndelivered"/>).</summary>
    private const string RebuildRequeued = "rebuild_requeued";

    /// <summary>
    /// A backup of a rebuild that no requeue followed: one written after the last requeue the store records (with a
    /// second's slack, since LiteDB keeps times to the millisecond), or any backup when the store records none. A store
    /// that was rebuilt before requeues were recorded has it done once more at its first open: the results it queues
    /// that were delivered are sent once more under their own ids, which the results topic allows.
    /// </summary>
    private static string? UnrequeuedBackup(Database db, IEnumerable<string> backups)
    {
        // LiteDB gives dates back in local time, and DateTime comparisons ignore the kind: to UTC, as the file times are.
        DateTime? last = db.Meta.FindById(RebuildRequeued)?["at"] is { IsDateTime: true } at ? at.AsDateTime.ToUniversalTime() : null;
        return backups.Order(StringComparer.Ordinal).FirstOrDefault(b => last is null || File.GetLastWriteTimeUtc(b) > last.Value.AddSeconds(1));
    }

    /// <summary>A failure to open that says the file is damaged, not that the disk (full, or failing) or a permission failed.</summary>
    private static bool IsDamage(Exception e) => e is not (IOException or UnauthorizedAccessException or OutOfMemoryException) && !IsDiskFull(e);

    /// <summary>LiteDB's collection of what a rebuild could not read.</summary>
    private const string RebuildErrors = "_rebuild_errors";

    public string DatabasePath { get; }

    /// <summary>What opening the store last had to do about a damaged file, for the log; null when it opened as it was.</summary>
    public string? Recovery { get; private set; }

    /// <summary>
    /// The store was found damaged when it was opened again after a failure, and rebuilt (as <see cref="Recovery"/>
    /// says): a damage met by a read while running, not at the start. Raised under the store's lock.
    /// </summary>
    public event Action<string>? Recovered;

    /// <summary>
    /// Raised after a call that added outbox entries returned (results committed, dead letters moved back, a learned
    /// readout recorded, results queued again after a rebuild found while running), outside the store's lock: the
    /// publisher waits for this instead of reading the outbox every second to see what came.
    /// </summary>
    public event Action? Queued;

    /// <summary>A failure of the store (the disk or LiteDB) that the next call may not meet: the caller keeps what it
    /// was storing and tries again later. UnauthorizedAccessException is one too (EACCES or EPERM when the file is opened
    /// again after a failure): left out, it ended the store writer, unlogged, until a restart.</summary>
    public static bool IsStorageFailure(Exception e) => e is IOException or LiteException or UnauthorizedAccessException;

    /// <summary>The failure is the kernel's ENOSPC (errno 28), here or in an inner exception.</summary>
    public static bool IsDiskFull(Exception e)
    {
        for (Exception? x = e; x is not null; x = x.InnerException)
            if (x is IOException { HResult: 28 } || x.Message.Contains("No space left on device", StringComparison.Ordinal)) return true;
        return false;
    }

    /// <summary>The LiteDB instance and its collections, opened together and closed together.</summary>
    private sealed class Database : IDisposable
    {
        public readonly LiteDatabase Db;
        public readonly ILiteCollection<BsonDocument> Results, Outbox, Feedback, Updates, Learning, DeadLetters, Meta;

        public Database(string path)
        {
            // A plain BsonMapper instance: nothing is mapped through it, we only hand it BsonDocuments.
            // AutoRebuild: a file LiteDB finds damaged at open is rebuilt from what it can read (ResultStore's constructor).
            Db = new LiteDatabase(new ConnectionString { Filename = path, Connection = ConnectionType.Direct, AutoRebuild = true }, new BsonMapper());
            try
            {
                Results = Db.GetCollection("results", BsonAutoId.ObjectId);
                Outbox = Db.GetCollection("outbox", BsonAutoId.Int64);
                Feedback = Db.GetCollection("feedback", BsonAutoId.Int64);
                Updates = Db.GetCollection("updates", BsonAutoId.Int64);
                Learning = Db.GetCollection("learning", BsonAutoId.Int64);
                DeadLetters = Db.GetCollection("deadletters", BsonAutoId.Int64);
                Meta = Db.GetCollection("meta");
                Results.EnsureIndex("image_sha256", "$.image_sha256", unique: false);
                // Every label stored counts the labels of unknown results (StoreLabel), and the learner reads the known ones.
                Feedback.EnsureIndex("known_result", "$.known_result", unique: false);
                // PruneResults reads the oldest results, and asks of each whether a message or a label still names it.
                Results.EnsureIndex("stored_at", "$.stored_at", unique: false);
                Outbox.EnsureIndex("result_id", "$.result_id", unique: false);
                DeadLetters.EnsureIndex("result_id", "$.result_id", unique: false);
                Feedback.EnsureIndex("result_id", "$.result_id", unique: false);
            }
            catch
            {
                Abandon(Db);
                throw;
            }
        }

        public void Dispose() => Db.Dispose();
    }

    /// <summary>
    /// Runs <paramref name="operation"/> under the lock on an open database, opening it again first when the last
    /// call failed on the disk. A disk or LiteDB failure closes the instance and is rethrown.
    /// </summary>
    private T Use<T>(Func<Database, T> operation)
    {
        T result;
        bool queued;
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            _queued = false;
            Database db = _open ??= OpenOrRebuild();
            try { result = operation(db); }
            catch (Exception e) when (IsStorageFailure(e))
            {
                _open = null;
                Abandon(db.Db);
                throw;
            }
            queued = _queued;
        }
        if (queued) Queued?.Invoke();
        return result;
    }

    /// <summary>
    /// Runs <paramref name="body"/> as one LiteDB transaction (through <see cref="Use"/>) and makes it durable before
    /// returning. Any other exception rolls it back. A disk or LiteDB failure is not rolled back here: Use closes the
    /// instance, and reopening keeps only what LiteDB had committed to its log, which is all or nothing per transaction.
    /// </summary>
    private T InDurableTransaction<T>(Func<Database, T> body) => InTransaction(body, durable: true);

    /// <summary><see cref="InDurableTransaction"/>, made durable only when <paramref name="durable"/> (else at LiteDB's next checkpoint).</summary>
    private T InTransaction<T>(Func<Database, T> body, bool durable) => Use(d => Transact(d, body, durable));

    /// <summary>The transaction of <see cref="InTransaction"/> on a database in hand (one just opened, before Use has it).</summary>
    private static T Transact<T>(Database d, Func<Database, T> body, bool durable)
    {
        if (!d.Db.BeginTrans()) throw new InvalidOperationException("a LiteDB transaction is already open on this thread");
        T result;
        try
        {
            result = body(d);
            d.Db.Commit();
        }
        catch (Exception e) when (!IsStorageFailure(e))
        {
            d.Db.Rollback();
            throw;
        }
        if (durable) MakeDurable(d);
        return result;
    }

    /// <summary>
    /// Closes an instance that failed on the disk. It is closed before another is opened on the same file (two
    /// instances writing one file would corrupt it); its own error on closing, usually the disk error again, is the
    /// one the caller already has. The transactions the failure left open are first kept from being finalized later
    /// (<see cref="AbandonedTransactions"/>).
    /// </summary>
    private static void Abandon(LiteDatabase db)
    {
        AbandonedTransactions.SuppressFinalizers(db);
        try { db.Dispose(); }
        catch (Exception e) when (e is IOException or LiteException or ObjectDisposedException) { }
    }

    /// <summary>
    /// A query with its value as a parameter. LiteDB parses and compiles an expression once per source text and caches
    /// it; a value written into the text, as Query.EQ and its kind write it, made every call compile a new expression:
    /// 1.3–1.8 ms for a look-up that takes 15–24 us compiled, once per result committed and per outbox read, under the
    /// store's lock (<c>make bench-store</c>).
    /// </summary>
    private static BsonExpression Where(string source, BsonValue value) => BsonExpression.Create(source, value);

    /// <summary>The predicate of a document that names a result (outbox entries, dead letters, labels).</summary>
    private const string NamesResult = "$.result_id = @0";

    public bool HasResult(string resultId) => Use(d => d.Results.FindById(resultId) is not null);

    /// <summary>
    /// Stores each result with its outbox entry, all in ONE transaction. A result whose image (SHA-256) already has a
    /// result is skipped: it gets no second result and no second outbox entry. Returns, per input, whether it was new.
    /// </summary>
    public bool[] Commit(IReadOnlyList<StoredResult> batch, string resultsTopic) => Commit(batch, resultsTopic, new string[batch.Count]);

    /// <summary>
    /// <see cref="Commit(IReadOnlyList{StoredResult}, string)"/>, filling <paramref name="resultIds"/> with the id of
    /// each input's result: its own when it was new, else the one already stored for its image.
    /// <para>
    /// Looked up by image, not by result id: the id names the model too, so a capture stored but still in the inbox
    /// (a kill between the commit and the move, or a done folder it cannot be moved to) and taken again after a model
    /// update got a second result under a new id, published as a new case, instead of being acknowledged with its own.
    /// </para>
    /// </summary>
    public bool[] Commit(IReadOnlyList<StoredResult> batch, string resultsTopic, string[] resultIds) => InDurableTransaction(d =>
    {
        var fresh = new bool[batch.Count];
        for (int i = 0; i < batch.Count; i++)
        {
            StoredResult r = batch[i];
            if (d.Results.FindOne(Where("$.image_sha256 = @0", r.ImageSha256)) is { } stored)
            {
                resultIds[i] = stored["_id"].AsString;
                continue;
            }
            resultIds[i] = r.ResultId;
            d.Results.Insert(new BsonDocument
            {
                ["_id"] = r.ResultId,
                ["image_sha256"] = r.ImageSha256,
                ["label"] = r.Label,
                ["confidence"] = (double)r.Confidence,
                ["refer"] = r.Refer,
                ["tiled"] = r.Tiled,
                ["model_id"] = r.ModelId,
                ["model_version"] = r.ModelVersion,
                ["latency_ms"] = r.LatencyMs,
                ["energy_mj"] = r.EnergyMillijoules is double e ? new BsonValue(e) : BsonValue.Null,
                ["captured_at"] = r.CapturedAt,
                ["stored_at"] = DateTime.UtcNow,
                ["source"] = r.Source,
                ["payload"] = r.Payload,
                // Where it is published: a result whose outbox entry a rebuild lost is queued there again (RequeueUndelivered).
                ["topic"] = resultsTopic,
                // Stays on the device (never published): the readout learner's case once a clinician labels it.
                ["head_input"] = r.HeadInput is null ? BsonValue.Null : (byte[])(Array)r.HeadInput,
                ["backbone"] = r.Backbone is null ? BsonValue.Null : r.Backbone,
            });
            Enqueue(d, r.ResultId, resultsTopic, r.Payload, r.LandedTimestamp);
            fresh[i] = true;
        }
        return fresh;
    });

    /// <summary>Outbox entries with id greater than <paramref name="afterId"/>, oldest first.</summary>
    public List<OutboxEntry> ReadOutbox(long afterId, int max) => Use(d =>
    {
        var list = new List<OutboxEntry>(Math.Min(max, 256));
        foreach (BsonDocument doc in d.Outbox.Find(Where("$._id > @0", afterId), 0, max))
            list.Add(new OutboxEntry(doc["_id"].AsInt64, doc["result_id"].AsString, doc["topic"].AsString, doc["payload"].AsBinary, doc["landed"].AsInt64));
        return list;
    });

    /// <summary>
    /// Deletes entries whose PUBACK arrived. When that empties the outbox, every result stored so far has been delivered
    /// or is a dead letter, and the time is recorded as such (<see cref="RequeueUndelivered"/> starts there). Not made
    /// durable at once: a deletion a power cut loses only has the entry sent once more.
    /// </summary>
    public void DeleteOutbox(IReadOnlyCollection<long> ids)
    {
        if (ids.Count == 0) return;
        InTransaction(d =>
        {
            foreach (long id in ids) d.Outbox.Delete(id);
            if (d.Outbox.FindOne(Query.All()) is null) d.Meta.Upsert(new BsonDocument { ["_id"] = DeliveredThrough, ["at"] = DateTime.UtcNow });
            return 0;
        }, durable: false);
    }

    /// <summary>
    /// Adds an outbox entry under the next outbox id of this store. LiteDB's own ids go on from the highest id in the
    /// collection when the file is opened again, which the store does after each failure: an entry deleted (or lost to a
    /// rebuild) just before would see its id given to a new entry, and the publisher, which keys the entries it has in
    /// flight, acknowledged, or refused by id, could take the new entry for the old one and delete it unsent.
    /// </summary>
    private void Enqueue(Database d, BsonValue resultId, BsonValue topic, BsonValue payload, BsonValue landed)
    {
        d.Outbox.Insert(new BsonDocument
        {
            ["_id"] = ++_lastOutboxId, ["result_id"] = resultId, ["topic"] = topic, ["payload"] = payload, ["landed"] = landed,
        });
        _queued = true;
    }

    /// <summary>Takes note of the highest outbox id in a database just opened (see <see cref="Enqueue"/>).</summary>
    private Database Opened(Database db)
    {
        try
        {
            // The newest entry by id (Max throws on an empty collection).
            if (db.Outbox.Find(Query.All(Query.Descending), 0, 1).FirstOrDefault()?["_id"] is { IsInt64: true } last && last.AsInt64 > _lastOutboxId)
                _lastOutboxId = last.AsInt64;
        }
        catch
        {
            // Closed before anything opens the file again (OpenOrRebuild does on damage): two instances would corrupt it.
            Abandon(db.Db);
            throw;
        }
        return db;
    }

    /// <summary>The <c>meta</c> document whose <c>at</c> is a time before which every stored result was delivered or is a dead letter.</summary>
    private const string DeliveredThrough = "delivered_through";

    /// <summary>An outbox entry or a dead letter names the result: it is still to be sent.</summary>
    private static bool Unsent(Database d, BsonValue resultId) =>
        d.Outbox.Exists(Where(NamesResult, resultId)) || d.DeadLetters.Exists(Where(NamesResult, resultId));

    /// <summary>
    /// Queues again, after a rebuild, the results that may not have been delivered: those stored since the outbox was
    /// last empty (all of them when that time is not known) that no outbox entry or dead letter names. A rebuild keeps
    /// what LiteDB could read, and a torn write hits the pages written last, outbox pages among them: a result whose
    /// entry was lost was never sent, while its capture was already acknowledged. Some of those queued again were
    /// delivered: they are sent once more under their own ids, which the results topic allows (OutboxPublisher).
    /// Results stored before they kept their topic cannot be queued and are counted in <paramref name="topicless"/>.
    /// Learned readouts recorded since then are queued again the same way (<paramref name="readouts"/>), from the
    /// package their update-log entry keeps (<see cref="RecordLearnedReadout"/>): the entry says the message was queued,
    /// so the learner, which reads it at start, would never queue one whose outbox entry the rebuild lost.
    /// </summary>
    private int RequeueUndelivered(Database db, out int topicless, out int readouts)
    {
        DateTime from = db.Meta.FindById(DeliveredThrough)?["at"] is { IsDateTime: true } at ? at.AsDateTime : DateTime.MinValue;
        (int queued, topicless, readouts) = Transact(db, d =>
        {
            int queued = 0, withoutTopic = 0, learned = 0;
            foreach (BsonDocument r in d.Results.Find(Where("$.stored_at >= @0", from)).ToList())
            {
                if (Unsent(d, r["_id"])) continue;
                if (!r["topic"].IsString) { withoutTopic++; continue; }
                Enqueue(d, r["_id"], r["topic"], r["payload"], System.Diagnostics.Stopwatch.GetTimestamp());
                queued++;
            }
            foreach (BsonDocument u in d.Updates.Find(BsonExpression.Create("$.topic = @0 AND $.received_at >= @1", LearnedTopic, from)).ToList())
            {
                if (!u["publish_topic"].IsString || !u["package"].IsBinary) continue;   // refused, or recorded before entries kept the package
                BsonValue id = LearnedMessageId(u["sha256"].AsString);
                if (Unsent(d, id)) continue;
                Enqueue(d, id, u["publish_topic"], u["package"], System.Diagnostics.Stopwatch.GetTimestamp());
                learned++;
            }
            // In the same transaction: recorded, the requeue was done; not recorded, the next open does it (UnrequeuedBackup).
            d.Meta.Upsert(new BsonDocument { ["_id"] = RebuildRequeued, ["at"] = DateTime.UtcNow });
            return (queued, withoutTopic, learned);
        }, durable: true);
        return queued;
    }

    /// <summary>
    /// Moves an outbox entry the broker kept refusing to the <c>deadletters</c> collection, with the broker's reason,
    /// in one transaction made durable: it leaves the drain but is not lost (<see cref="RequeueDeadLetters"/>).
    /// </summary>
    public void DeadLetter(OutboxEntry entry, string reason, int refusals) => InDurableTransaction(d =>
    {
        d.DeadLetters.Insert(new BsonDocument
        {
            ["result_id"] = entry.ResultId,
            ["topic"] = entry.Topic,
            ["payload"] = entry.Payload,
            ["landed"] = entry.LandedTimestamp,
            ["reason"] = reason,
            ["refusals"] = refusals,
            ["at"] = DateTime.UtcNow,
        });
        d.Outbox.Delete(entry.Id);
        return 0;
    });

    /// <summary>Moves every dead letter back to the end of the outbox (at start: the broker may accept them now); returns how many.</summary>
    public int RequeueDeadLetters() => Use(d => d.DeadLetters.Count()) == 0 ? 0 : InDurableTransaction(d =>
    {
        int moved = 0;
        DateTime? oldest = null;
        foreach (BsonDocument doc in d.DeadLetters.FindAll().ToList())
        {
            Enqueue(d, doc["result_id"], doc["topic"], doc["payload"], doc["landed"]);
            d.DeadLetters.Delete(doc["_id"]);
            moved++;
            if (d.Results.FindById(doc["result_id"])?["stored_at"] is { IsDateTime: true } stored && (oldest is null || stored.AsDateTime < oldest))
                oldest = stored.AsDateTime;
        }
        // Every result stored before delivered_through was delivered or is a dead letter; these are neither now. Left as
        // it was, a rebuild that lost their outbox entries before they were sent queued them no more
        // (RequeueUndelivered starts there), so the record goes back to the oldest of them.
        if (oldest is DateTime back && d.Meta.FindById(DeliveredThrough)?["at"] is { IsDateTime: true } at && at.AsDateTime > back)
            d.Meta.Upsert(new BsonDocument { ["_id"] = DeliveredThrough, ["at"] = back });
        return moved;
    });

    public List<DeadLetterEntry> DeadLetters() => Use(d => d.DeadLetters.FindAll().Select(doc => new DeadLetterEntry(
        doc["result_id"].AsString, doc["topic"].AsString, doc["payload"].AsBinary, doc["reason"].AsString, doc["refusals"].AsInt32, doc["at"].AsDateTime)).ToList());

    public int DeadLetterCount() => Use(d => d.DeadLetters.Count());
    public int OutboxCount() => Use(d => d.Outbox.Count());
    public int ResultCount() => Use(d => d.Results.Count());

    /// <summary>Stores a clinician label for a result. Returns false when the result id is unknown on this device.</summary>
    public bool AddFeedback(string resultId, string label, string? clinician, string? note, string raw, string? lesionId = null)
        => StoreLabel(resultId, label, clinician, note, raw, lesionId, maxUnknown: int.MaxValue) == LabelKept.Known;

    /// <summary>
    /// Stores a clinician label. A label of a result of this device is always kept; one of a result this device does
    /// not have is kept only while fewer than <paramref name="maxUnknown"/> such labels are stored: anyone who may
    /// publish on the feedback topic could otherwise grow the database without bound.
    /// </summary>
    public LabelKept StoreLabel(string resultId, string label, string? clinician, string? note, string raw, string? lesionId, int maxUnknown) => Use(d =>
    {
        bool known = d.Results.FindById(resultId) is not null;
        if (!known && d.Feedback.Count(Query.EQ("known_result", false)) >= maxUnknown) return LabelKept.NotKept;
        d.Feedback.Insert(new BsonDocument
        {
            ["result_id"] = resultId,
            ["label"] = label,
            ["lesion_id"] = lesionId is null ? BsonValue.Null : lesionId,
            ["clinician"] = clinician is null ? BsonValue.Null : clinician,
            ["note"] = note is null ? BsonValue.Null : note,
            ["known_result"] = known,
            ["received_at"] = DateTime.UtcNow,
            ["raw"] = raw,
        });
        MakeDurable(d);
        return known ? LabelKept.Known : LabelKept.Unknown;
    });

    /// <summary>
    /// Forces everything committed so far onto the disk. LiteDB 5's Commit only queues the transaction's pages for a
    /// background writer thread (DiskService.WriteAsync), so when it returns the pages may still be in our process's
    /// memory: a SIGKILL or power cut at that moment would lose a result whose capture the caller is about to
    /// acknowledge (delete from the inbox). Checkpoint waits for that queue, copies the log into the data file,
    /// fsyncs it and truncates the log. Called under <see cref="_gate"/> after each commit that acknowledges input;
    /// one per batch of results, so its cost is shared by up to a batch of captures. Outbox deletions skip it: a
    /// lost deletion only republishes a result under its own id.
    /// </summary>
    private static void MakeDurable(Database d) => d.Db.Checkpoint();

    public int FeedbackCount() => Use(d => d.Feedback.Count());

    /// <summary>
    /// The labelled cases of one backbone (<see cref="QanaEdge.Model.Packaging.ReadoutUpdates.BackboneDigest"/>): every
    /// result of this device that a clinician labelled and whose head input was recorded by a model with that backbone,
    /// with its latest label (a later label corrects an earlier one), in the order the labels first arrived.
    /// <paramref name="unusable"/> counts labelled results that are not cases of it (another backbone, or no head input).
    /// </summary>
    public List<LabelledCase> LabelledCases(string backbone, out int unusable)
    {
        int skipped = 0;
        List<LabelledCase> cases = Use(d =>
        {
            var latest = new Dictionary<string, (string Label, string? Lesion)>(StringComparer.Ordinal);
            var order = new List<string>();
            // In the order the labels arrived (their auto-increment id), which makes the last one per result the latest:
            // a query through the known_result index returns equal keys in no such order.
            foreach (BsonDocument f in d.Feedback.Find(Query.EQ("known_result", true)).OrderBy(f => f["_id"].AsInt64))
            {
                string id = f["result_id"].AsString;
                if (!latest.ContainsKey(id)) order.Add(id);
                // (Labels stored before lesion ids were recorded have no such field.)
                latest[id] = (f["label"].AsString, f["lesion_id"].IsString ? f["lesion_id"].AsString : null);
            }
            var list = new List<LabelledCase>(order.Count);
            foreach (string id in order)
            {
                BsonDocument? r = d.Results.FindById(id);
                if (r is null || !r["head_input"].IsBinary || r["backbone"].AsString != backbone) { skipped++; continue; }
                list.Add(new LabelledCase(id, (sbyte[])(Array)r["head_input"].AsBinary, latest[id].Label, latest[id].Lesion));
            }
            return list;
        });
        unusable = skipped;
        return cases;
    }

    /// <summary>
    /// Deletes, of the results stored before <paramref name="storedBefore"/>, those the device no longer needs: delivered
    /// (no outbox entry or dead letter names them) and not labelled (a label makes its result a case of the readout
    /// learner). Looks at <paramref name="max"/> of them at most, oldest first, past the <paramref name="skip"/> oldest
    /// (the ones earlier batches of a pass kept, which stay first), in one transaction: a pass (<see cref="ResultPruning"/>)
    /// releases the store's lock between batches, so a commit waits for one batch at most. Not made durable at once: a
    /// deletion a power cut loses is made again by the next pass. An image whose result is gone is a new capture if it
    /// comes again, classified and published once more (under the same result id while the model is the same).
    /// </summary>
    public PruneBatch PruneResults(DateTime storedBefore, int skip, int max) => InTransaction(d =>
    {
        int deleted = 0, kept = 0;
        List<BsonValue> oldest = d.Results.Query().Where(Where("$.stored_at < @0", storedBefore)).OrderBy("$.stored_at")
            .Select("$._id").Offset(skip).Limit(max).ToEnumerable().Select(doc => doc["_id"]).ToList();
        foreach (BsonValue id in oldest)
        {
            if (Unsent(d, id) || d.Feedback.Exists(Where(NamesResult, id)))
            {
                kept++;
                continue;
            }
            d.Results.Delete(id);
            deleted++;
        }
        return new PruneBatch(deleted, kept);
    }, durable: false);

    /// <summary>Records a run of the readout learner.</summary>
    public void LogLearning(LearningAttempt attempt, IReadOnlyDictionary<string, double> metrics) => Use(d =>
    {
        var doc = new BsonDocument
        {
            ["backbone"] = attempt.Backbone, ["cases"] = attempt.Cases, ["outcome"] = attempt.Outcome,
            ["reason"] = attempt.Reason, ["at"] = attempt.At,
        };
        var m = new BsonDocument();
        foreach (var (key, value) in metrics) m[key] = value;
        doc["metrics"] = m;
        d.Learning.Insert(doc);
        MakeDurable(d);
        return 0;
    });

    /// <summary>The readout learner's runs, oldest first.</summary>
    public List<LearningAttempt> LearningLog() => Use(d =>
        d.Learning.FindAll().Select(doc => new LearningAttempt(doc["backbone"].AsString, doc["cases"].AsInt32, doc["outcome"].AsString,
            doc["reason"].AsString, doc["at"].AsDateTime)).ToList());

    /// <summary>
    /// Records a readout this device learned and applied, in the update log under the topic <c>learned</c>, and queues
    /// its signed package for the publisher on <paramref name="topic"/> (durable, sent at QoS 1 until acknowledged):
    /// both in one transaction, so the log entry means the message was queued. The entry keeps the topic and the package,
    /// as a result keeps its payload, so that a rebuild that loses the outbox entry queues it again (<see cref="RequeueUndelivered"/>).
    /// </summary>
    public void RecordLearnedReadout(string sha256, string reason, string topic, byte[] package) => InDurableTransaction(d =>
    {
        BsonDocument entry = UpdateEntry(LearnedTopic, sha256, package.Length, "applied", reason);
        entry["publish_topic"] = topic;
        entry["package"] = package;
        d.Updates.Insert(entry);
        Enqueue(d, LearnedMessageId(sha256), topic, package, System.Diagnostics.Stopwatch.GetTimestamp());
        return 0;
    });

    /// <summary>The outbox's name for a learned readout's message (the result id of a result's).</summary>
    private static string LearnedMessageId(string sha256) => "readout:" + sha256;

    /// <summary>
    /// Deletes the update log's <see cref="LearnedTopic"/> entries recorded before <paramref name="recordedBefore"/>
    /// that nothing needs any more: the readout's message delivered (no outbox entry or dead letter names it) and the
    /// readout not among <paramref name="stored"/>, the packages under the state folder (the learner reads the entries of
    /// those at start to know they were queued). Entries of learned readouts an update refused go by age alone. Returns
    /// how many went. Not made durable at once: one a power cut brings back goes at the next pass.
    /// </summary>
    public int PruneLearnedEntries(DateTime recordedBefore, IReadOnlySet<string> stored) => InTransaction(d =>
    {
        int deleted = 0;
        foreach (BsonDocument u in d.Updates.Find(BsonExpression.Create("$.topic = @0 AND $.received_at < @1", LearnedTopic, recordedBefore)).ToList())
        {
            string sha = u["sha256"].AsString;
            if (stored.Contains(sha) || Unsent(d, LearnedMessageId(sha))) continue;
            d.Updates.Delete(u["_id"]);
            deleted++;
        }
        return deleted;
    }, durable: false);

    /// <summary>The update log's topic for readouts this device learned.</summary>
    public const string LearnedTopic = "learned";

    /// <summary>
    /// Entries of the update log kept besides this device's own learned readouts: the newest ones. Each package that
    /// arrives on an updates topic adds one, from anyone who may publish there, so the log grew without bound; 1000 is
    /// far more updates than a device applies in its life, and what is applied lives in the state folder, not here.
    /// </summary>
    public const int MaxUpdateLogEntries = 1000;

    /// <summary>
    /// Records an update package that arrived, whether it was applied and why not; on disk before it returns, since the
    /// broker's message is acknowledged after it (a kill right then would lose the only record of a refused update).
    /// The oldest entries beyond <see cref="MaxUpdateLogEntries"/> go in the same transaction. Entries of topic
    /// <see cref="LearnedTopic"/> are not counted here: the learner reads them at start to know which of its applied
    /// readouts were queued, and one dropped would be queued and published again (ReadoutLearning.RecoverUnqueued);
    /// they go with the results' pruning, once nothing needs them (<see cref="PruneLearnedEntries"/>).
    /// </summary>
    public void LogUpdate(string topic, string sha256, long size, string outcome, string reason) => InDurableTransaction(d =>
    {
        d.Updates.Insert(UpdateEntry(topic, sha256, size, outcome, reason));
        BsonExpression received = Query.Not("topic", LearnedTopic);
        int over = d.Updates.Count(received) - MaxUpdateLogEntries;
        // Found in _id order, which is arrival order (Int64 auto ids): the oldest first.
        if (over > 0)
            foreach (BsonDocument old in d.Updates.Find(received, 0, over).ToList()) d.Updates.Delete(old["_id"]);
        return true;
    });

    private static BsonDocument UpdateEntry(string topic, string sha256, long size, string outcome, string reason) => new()
    {
        ["topic"] = topic, ["sha256"] = sha256, ["size"] = size,
        ["outcome"] = outcome, ["reason"] = reason, ["received_at"] = DateTime.UtcNow,
    };

    /// <summary>The update log, oldest first.</summary>
    public List<(string Topic, string Sha256, string Outcome, string Reason)> UpdateLog() => Use(d =>
        d.Updates.FindAll().Select(doc => (doc["topic"].AsString, doc["sha256"].AsString, doc["outcome"].AsString, doc["reason"].AsString)).ToList());

    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            _open?.Dispose();
            _open = null;
        }
    }
}
