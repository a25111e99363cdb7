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
    long LandedTimestamp);

/// <summary>An outbox entry waiting for its PUBACK.</summary>
public sealed record OutboxEntry(long Id, string ResultId, string Topic, byte[] Payload, long LandedTimestamp);

/// <summary>
/// The daemon's LiteDB file: results, the outbox, clinician feedback and the update log. Only the BsonDocument API
/// is used (no reflection mapper: Native-AOT clean). All writes are serialised through one lock because a LiteDB
/// transaction belongs to the thread that began it.
/// </summary>
public sealed class ResultStore : IDisposable
{
    private readonly LiteDatabase _db;
    private readonly ILiteCollection<BsonDocument> _results;
    private readonly ILiteCollection<BsonDocument> _outbox;
    private readonly ILiteCollection<BsonDocument> _feedback;
    private readonly ILiteCollection<BsonDocument> _updates;
    private readonly Lock _gate = new();

    public ResultStore(string path)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        // A plain BsonMapper instance: nothing is mapped through it, we only hand it BsonDocuments.
        _db = new LiteDatabase(new ConnectionString { Filename = path, Connection = ConnectionType.Direct }, new BsonMapper());
        _results = _db.GetCollection("results", BsonAutoId.ObjectId);
        _outbox = _db.GetCollection("outbox", BsonAutoId.Int64);
        _feedback = _db.GetCollection("feedback", BsonAutoId.Int64);
        _updates = _db.GetCollection("updates", BsonAutoId.Int64);
        _results.EnsureIndex("image_sha256", "$.image_sha256", unique: false);
        DatabasePath = path;
    }

    public string DatabasePath { get; }

    public bool HasResult(string resultId)
    {
        lock (_gate) return _results.FindById(resultId) is not null;
    }

    /// <summary>
    /// Stores each result with its outbox entry, all in ONE transaction. A result whose id is already stored (the
    /// same image again, or a capture redelivered after a crash) is skipped: it keeps its id and gets no second
    /// outbox entry. Returns, per input, whether it was new.
    /// </summary>
    public bool[] Commit(IReadOnlyList<StoredResult> batch, string resultsTopic)
    {
        var fresh = new bool[batch.Count];
        lock (_gate)
        {
            if (!_db.BeginTrans()) throw new InvalidOperationException("a LiteDB transaction is already open on this thread");
            try
            {
                for (int i = 0; i < batch.Count; i++)
                {
                    StoredResult r = batch[i];
                    if (_results.FindById(r.ResultId) is not null) continue;
                    _results.Insert(new BsonDocument
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
                    });
                    _outbox.Insert(new BsonDocument
                    {
                        ["result_id"] = r.ResultId,
                        ["topic"] = resultsTopic,
                        ["payload"] = r.Payload,
                        ["landed"] = r.LandedTimestamp,
                    });
                    fresh[i] = true;
                }
                _db.Commit();
            }
            catch
            {
                _db.Rollback();
                throw;
            }
            MakeDurable();
        }
        return fresh;
    }

    /// <summary>Outbox entries with id greater than <paramref name="afterId"/>, oldest first.</summary>
    public List<OutboxEntry> ReadOutbox(long afterId, int max)
    {
        lock (_gate)
        {
            var list = new List<OutboxEntry>(Math.Min(max, 256));
            foreach (BsonDocument d in _outbox.Find(Query.GT("_id", afterId), 0, max))
                list.Add(new OutboxEntry(d["_id"].AsInt64, d["result_id"].AsString, d["topic"].AsString, d["payload"].AsBinary, d["landed"].AsInt64));
            return list;
        }
    }

    /// <summary>Deletes entries whose PUBACK arrived.</summary>
    public void DeleteOutbox(IReadOnlyCollection<long> ids)
    {
        if (ids.Count == 0) return;
        lock (_gate)
        {
            _db.BeginTrans();
            foreach (long id in ids) _outbox.Delete(id);
            _db.Commit();
        }
    }

    public int OutboxCount() { lock (_gate) return _outbox.Count(); }
    public int ResultCount() { lock (_gate) return _results.Count(); }

    /// <summary>Stores a clinician label for a result. Returns false when the result id is unknown on this device.</summary>
    public bool AddFeedback(string resultId, string label, string? clinician, string? note, string raw)
    {
        lock (_gate)
        {
            bool known = _results.FindById(resultId) is not null;
            _feedback.Insert(new BsonDocument
            {
                ["result_id"] = resultId,
                ["label"] = label,
                ["clinician"] = clinician is null ? BsonValue.Null : clinician,
                ["note"] = note is null ? BsonValue.Null : note,
                ["known_result"] = known,
                ["received_at"] = DateTime.UtcNow,
                ["raw"] = raw,
            });
            MakeDurable();
            return known;
        }
    }

    /// <summary>
    /// Forces everything committed so far onto the disk. LiteDB 5's Commit only queues the transaction's pages for a
    /// background writer thread (DiskService.WriteAsync), so when it returns the pages may still be in our process's
    /// memory: a SIGKILL or power cut at that moment would lose a result whose capture the caller is about to
    /// acknowledge (delete from the inbox). Checkpoint waits for that queue, copies the log into the data file,
    /// fsyncs it and truncates the log. Called under <see cref="_gate"/> after each commit that acknowledges input;
    /// one per batch of results, so its cost is shared by up to a batch of captures. Outbox deletions skip it: a
    /// lost deletion only republishes a result under its own id.
    /// </summary>
    private void MakeDurable() => _db.Checkpoint();

    public int FeedbackCount() { lock (_gate) return _feedback.Count(); }

    /// <summary>Records an update package that arrived, whether it was applied and why not.</summary>
    public void LogUpdate(string topic, string sha256, long size, string outcome, string reason)
    {
        lock (_gate)
        {
            _updates.Insert(new BsonDocument
            {
                ["topic"] = topic, ["sha256"] = sha256, ["size"] = size,
                ["outcome"] = outcome, ["reason"] = reason, ["received_at"] = DateTime.UtcNow,
            });
        }
    }

    /// <summary>The update log, oldest first.</summary>
    public List<(string Topic, string Sha256, string Outcome, string Reason)> UpdateLog()
    {
        lock (_gate)
            return _updates.FindAll().Select(d => (d["topic"].AsString, d["sha256"].AsString, d["outcome"].AsString, d["reason"].AsString)).ToList();
    }

    public void Dispose()
    {
        lock (_gate) _db.Dispose();
    }
}
