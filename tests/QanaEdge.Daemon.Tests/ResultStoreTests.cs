using System.Text.RegularExpressions;
using LiteDB;
using QanaEdge.Daemon.Storage;
using QanaEdge.Daemon.Tests.Infrastructure;

namespace QanaEdge.Daemon.Tests;

public sealed class ResultStoreTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("qana-store-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>A small result numbered <paramref name="i"/> (its image differs for each i under 10); the pruning tests use it too.</summary>
    internal static StoredResult Result(int i) => new(
        ResultId: $"r{i:D4}", ImageSha256: new string('a', 63) + (i % 10), Label: "nv", Confidence: 0.9f, Refer: false,
        Tiled: false, ModelId: "m", ModelVersion: "1", LatencyMs: 2.5, EnergyMillijoules: null,
        CapturedAt: new DateTime(2026, 11, 27, 12, 0, 0, DateTimeKind.Utc), Source: "inbox",
        Payload: System.Text.Encoding.UTF8.GetBytes($"{{\"result_id\":\"r{i:D4}\"}}"), LandedTimestamp: i);

    /// <summary>
    /// What a power cut right after Commit returns leaves behind is the data file plus whatever LiteDB's background
    /// writer had flushed to its log. A commit that acknowledges captures must not depend on the second: the data
    /// file alone, copied while the store is still open, must hold every committed result and outbox entry.
    /// </summary>
    [Fact]
    public void Committed_results_are_in_the_data_file_when_commit_returns()
    {
        string path = Path.Combine(_dir, "qana.db");
        using var store = new ResultStore(path);
        bool[] fresh = store.Commit([Result(1), Result(2), Result(3)], "qana/dev/results");
        Assert.Equal([true, true, true], fresh);

        string copy = Path.Combine(_dir, "after-power-cut.db");
        using (var source = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite))
        using (var target = File.Create(copy))
            source.CopyTo(target);

        using var reopened = new LiteDatabase(new ConnectionString { Filename = copy, Connection = ConnectionType.Direct }, new BsonMapper());
        var ids = reopened.GetCollection("results").FindAll().Select(d => d["_id"].AsString).Order().ToArray();
        Assert.Equal(["r0001", "r0002", "r0003"], ids);
        Assert.Equal(3, reopened.GetCollection("outbox").Count());
    }

    /// <summary>
    /// A store file damaged in place (as a torn write on an SD card leaves it: here one byte in every 997 past the header
    /// flipped) made LiteDB throw at open, and the daemon crashed at every start. LiteDB's rebuild now reads what it can
    /// into a new file, keeps the damaged one beside it, and the store says so.
    /// </summary>
    [Fact]
    public void A_damaged_store_file_is_rebuilt_from_what_can_be_read_and_the_damaged_one_kept()
    {
        string path = Path.Combine(_dir, "qana.db");
        using (var store = new ResultStore(path))
        {
            store.Commit([.. Enumerable.Range(1, 6).Select(Result)], "qana/dev/results");
            Assert.Null(store.Recovery);
        }
        byte[] damaged = File.ReadAllBytes(path);
        for (int i = 8192; i < damaged.Length; i += 997) damaged[i] ^= 0x5A;
        File.WriteAllBytes(path, damaged);

        using var reopened = new ResultStore(path);

        string backup = Path.Combine(_dir, "qana-backup.db");
        Assert.Matches($"^{Regex.Escape(path)} was damaged and LiteDB rebuilt it from what it could read, with [1-9][0-9]* errors reading its pages "
            + $@"\(its _rebuild_errors collection lists them\); the damaged file is kept as {Regex.Escape(backup)}; "
            + "0 results not known to be delivered were queued to be sent again$", reopened.Recovery);   // all six are in the outbox still
        // The damaged file as it was, but for the flag in its header page by which LiteDB marked it for the rebuild.
        Assert.Equal(damaged[8192..], File.ReadAllBytes(backup)[8192..]);
        Assert.Equal(6, reopened.ResultCount());
        Assert.Equal([true], reopened.Commit([Result(7)], "qana/dev/results"));
        // The open that found the file damaged left a LiteDB instance with a transaction open; its finalizer, run on a
        // damaged file, threw and ended the process (LiteDB #2828) unless the store suppressed it.
        GC.Collect();
        GC.WaitForPendingFinalizers();
    }

    /// <summary>
    /// Damage that LiteDB meets only on a read, after the file opened: the read fails as any store failure does (the
    /// caller keeps what it had and tries again), and the store opened again is rebuilt, which <see cref="ResultStore.Recovered"/>
    /// says for the log.
    /// </summary>
    [Fact]
    public void Damage_met_by_a_read_is_rebuilt_when_the_store_is_opened_again_and_said()
    {
        string path = Path.Combine(_dir, "qana.db");
        using (var store = new ResultStore(path))
            store.Commit([.. Enumerable.Range(1, 9).Select(Result)], "qana/dev/results");
        byte[] damaged = File.ReadAllBytes(path);
        for (int i = 8200; i < damaged.Length; i += 961) damaged[i] ^= 0x5A;
        File.WriteAllBytes(path, damaged);

        using var reopened = new ResultStore(path);
        Assert.Null(reopened.Recovery);
        var found = new List<string>();
        reopened.Recovered += found.Add;
        Exception failure = Assert.ThrowsAny<Exception>(() => reopened.ResultCount());
        Assert.True(ResultStore.IsStorageFailure(failure), failure.ToString());

        Assert.Equal(9, reopened.ResultCount());
        Assert.StartsWith($"{path} was damaged and LiteDB rebuilt it from what it could read", Assert.Single(found));
        Assert.Equal(found[0], reopened.Recovery);
        GC.Collect();
        GC.WaitForPendingFinalizers();
    }

    /// <summary>
    /// A rebuild keeps what LiteDB could read, and a torn write hits the pages written last, outbox pages among them: a
    /// result whose outbox entry was lost was never to be sent, while its capture was acknowledged. After a rebuild the
    /// results stored since the outbox was last empty that nothing queues are queued again: here r5, whose entry is
    /// lost, and r4, delivered since (sent once more under its own id); not r1–r3, delivered before the outbox emptied,
    /// nor r6, a dead letter. The rebuild is requested as LiteDB itself requests one, by the header's invalid-state byte.
    /// </summary>
    [Fact]
    public void A_rebuild_queues_again_the_results_stored_since_the_outbox_was_last_empty_that_nothing_queues()
    {
        string path = Path.Combine(_dir, "qana.db");
        using (var store = new ResultStore(path))
        {
            store.Commit([Result(1), Result(2), Result(3)], "qana/dev/results");
            store.DeleteOutbox(store.ReadOutbox(0, 100).Select(e => e.Id).ToArray());
            store.Commit([Result(4), Result(5), Result(6)], "qana/dev/results");
            List<OutboxEntry> outbox = store.ReadOutbox(0, 100);
            store.DeleteOutbox([outbox.Single(e => e.ResultId == "r0004").Id]);
            store.DeadLetter(outbox.Single(e => e.ResultId == "r0006"), "quota exceeded", 5);
        }
        using (var raw = new LiteDatabase(new ConnectionString { Filename = path, Connection = ConnectionType.Direct }, new BsonMapper()))
            Assert.Equal(1, raw.GetCollection("outbox").DeleteMany(Query.EQ("result_id", "r0005")));
        byte[] file = File.ReadAllBytes(path);
        file[191] = 1;   // LiteDB 5's HeaderPage.P_INVALID_DATAFILE_STATE: rebuild at the next open
        File.WriteAllBytes(path, file);

        using var reopened = new ResultStore(path);
        Assert.Contains("; 2 results not known to be delivered were queued to be sent again", reopened.Recovery);
        List<OutboxEntry> queued = reopened.ReadOutbox(0, 100);
        Assert.Equal(["r0004", "r0005"], queued.Select(e => e.ResultId).Order());
        Assert.All(queued, e => Assert.Equal("qana/dev/results", e.Topic));
        Assert.Equal(Result(5).Payload, queued.Single(e => e.ResultId == "r0005").Payload);
        Assert.Equal("r0006", reopened.DeadLetters().Single().ResultId);
        Assert.Equal(6, reopened.ResultCount());
    }

    /// <summary>
    /// A rebuild whose requeue did not complete (a kill, or a full disk right after the rebuild's copy of the file) has it
    /// done at the next open, once. Before, only the open that made the backup requeued, and a requeue cut short was
    /// never done: the results whose outbox entries the rebuild lost stayed unsent until pruning deleted them.
    /// </summary>
    [Fact]
    public void A_rebuild_whose_requeue_was_cut_short_has_it_done_at_the_next_open()
    {
        string path = Path.Combine(_dir, "qana.db");
        using (var store = new ResultStore(path))
            store.Commit([Result(1), Result(2)], "qana/dev/results");
        // What such a rebuild leaves: the damaged file kept beside the store, outbox entries lost, no requeue recorded.
        using (var raw = new LiteDatabase(new ConnectionString { Filename = path, Connection = ConnectionType.Direct }, new BsonMapper()))
            Assert.Equal(2, raw.GetCollection("outbox").DeleteAll());
        File.WriteAllBytes(Path.Combine(_dir, "qana-backup.db"), [1, 2, 3]);

        using (var reopened = new ResultStore(path))
        {
            Assert.Equal(["r0001", "r0002"], reopened.ReadOutbox(0, 100).Select(e => e.ResultId).Order());
            Assert.Contains("were not queued again then (a stop or a store failure cut that short): 2 results not known to be delivered were queued", reopened.Recovery);
        }
        // Once: the requeue is recorded after the backup was written.
        using var again = new ResultStore(path);
        Assert.Null(again.Recovery);
        Assert.Equal(2, again.OutboxCount());
    }

    /// <summary>
    /// Dead letters moved back to the outbox (at a start) are neither delivered nor dead letters any more, though stored
    /// before the time the outbox was last empty: a rebuild that then loses their entries queues them again. Before, the
    /// record of that time stayed where it was, and the rebuild, which starts there, left them unsent for good.
    /// </summary>
    [Fact]
    public void A_rebuild_queues_again_the_dead_letters_moved_back_to_the_outbox_and_lost_with_it()
    {
        string path = Path.Combine(_dir, "qana.db");
        using (var store = new ResultStore(path))
        {
            store.Commit([Result(1), Result(2), Result(3)], "qana/dev/results");
            List<OutboxEntry> outbox = store.ReadOutbox(0, 100);
            store.DeadLetter(outbox.Single(e => e.ResultId == "r0002"), "quota exceeded", 5);
            store.DeleteOutbox([.. outbox.Where(e => e.ResultId != "r0002").Select(e => e.Id)]);   // the outbox is empty
            Assert.Equal(1, store.RequeueDeadLetters());
        }
        using (var raw = new LiteDatabase(new ConnectionString { Filename = path, Connection = ConnectionType.Direct }, new BsonMapper()))
            Assert.Equal(1, raw.GetCollection("outbox").DeleteMany(Query.EQ("result_id", "r0002")));
        byte[] file = File.ReadAllBytes(path);
        file[191] = 1;   // rebuild at the next open, as above
        File.WriteAllBytes(path, file);

        using var reopened = new ResultStore(path);
        // r0002, with r0003 stored after it (delivered, sent once more under its own id); r0001 too when it was stored in
        // the same millisecond (LiteDB keeps times to the millisecond).
        List<string> queued = [.. reopened.ReadOutbox(0, 100).Select(e => e.ResultId).Order()];
        Assert.Contains("r0002", queued);
        Assert.Contains("r0003", queued);
        Assert.Contains("were queued to be sent again", reopened.Recovery);
    }

    /// <summary>
    /// A file LiteDB cannot open even to rebuild it (not a LiteDB file at all: here random bytes) is set aside, and the
    /// store starts again empty, where the daemon crashed at every start.
    /// </summary>
    [Fact]
    public void A_store_file_that_cannot_be_rebuilt_is_set_aside_and_a_new_store_started()
    {
        string path = Path.Combine(_dir, "qana.db");
        var junk = new byte[64 * 1024];
        new Random(7).NextBytes(junk);
        File.WriteAllBytes(path, junk);

        using var store = new ResultStore(path);

        string aside = Assert.Single(Directory.GetFiles(_dir, "qana.db.damaged-*"));
        Assert.Equal(junk, File.ReadAllBytes(aside));
        Assert.StartsWith($"{path} could not be opened (", store.Recovery);
        Assert.EndsWith($"not even by LiteDB's rebuild: set aside as {aside}, and a new store started; the results, labels and unsent messages in it are not in the new one", store.Recovery);
        Assert.Equal([true], store.Commit([Result(1)], "qana/dev/results"));
        Assert.Equal(1, store.ResultCount());
        GC.Collect();   // as above: no finalizer of the failed opens may throw
        GC.WaitForPendingFinalizers();
    }

    /// <summary>
    /// The readout learner's cases: labelled results of this device with a head input recorded by the asked backbone,
    /// each once with its latest label (and the lesion it names), in the order the labels first came; the rest are counted
    /// as unusable.
    /// </summary>
    [Fact]
    public void Labelled_cases_are_the_labelled_results_of_one_backbone_with_their_latest_label()
    {
        using var store = new ResultStore(Path.Combine(_dir, "qana.db"));
        sbyte[] input = [1, -2, 3, -128, 127];
        store.Commit([
            Result(1) with { HeadInput = input, Backbone = "b1" },
            Result(2) with { HeadInput = [9, 9, 9, 9, 9], Backbone = "b1" },
            Result(3) with { HeadInput = input, Backbone = "b2" },   // another backbone (before a model update)
            Result(4),                                               // no head input (classified on an Akida card)
            Result(5) with { HeadInput = input, Backbone = "b1" },   // never labelled
        ], "qana/dev/results");
        store.AddFeedback("r0002", "mel", "dr-a", null, "{}");
        store.AddFeedback("r0001", "nv", "dr-a", null, "{}");
        store.AddFeedback("r0003", "bcc", "dr-a", null, "{}");
        store.AddFeedback("r0004", "bcc", "dr-a", null, "{}");
        store.AddFeedback("r9999", "bcc", "dr-a", null, "{}");       // not a result of this device
        store.AddFeedback("r0002", "bkl", "dr-b", "on review", "{}", lesionId: "L7"); // corrects the first label, names the lesion

        List<LabelledCase> cases = store.LabelledCases("b1", out int unusable);
        Assert.Equal(["r0002", "r0001"], cases.Select(c => c.ResultId));
        Assert.Equal(["bkl", "nv"], cases.Select(c => c.Label));
        Assert.Equal(["L7", null], cases.Select(c => c.LesionId));
        Assert.Equal(input, cases[1].HeadInput);
        Assert.Equal(2, unusable);
        Assert.Equal(["r0003"], store.LabelledCases("b2", out _).Select(c => c.ResultId));

        store.LogLearning(new LearningAttempt("b1", 2, "not-kept", "why", DateTime.UtcNow), new Dictionary<string, double> { ["cases"] = 2 });
        Assert.Equal(("b1", 2, "not-kept"), store.LearningLog().Select(a => (a.Backbone, a.Cases, a.Outcome)).Single());
    }

    [Fact]
    public void A_result_committed_twice_keeps_one_row_and_one_outbox_entry()
    {
        using var store = new ResultStore(Path.Combine(_dir, "qana.db"));
        Assert.Equal([true, true], store.Commit([Result(1), Result(2)], "t"));
        Assert.Equal([false, true], store.Commit([Result(1), Result(3)], "t"));
        Assert.Equal(3, store.ResultCount());
        Assert.Equal(3, store.OutboxCount());
    }

    /// <summary>
    /// The same image classified by another model (a capture taken again after a model update) has another result id;
    /// it is a duplicate of the stored result all the same, and the commit names that result's id.
    /// </summary>
    [Fact]
    public void An_image_already_stored_under_another_model_is_not_stored_again_and_keeps_its_result_id()
    {
        using var store = new ResultStore(Path.Combine(_dir, "qana.db"));
        Assert.Equal([true], store.Commit([Result(1)], "t"));
        var ids = new string[2];
        StoredResult again = Result(1) with { ResultId = "r0001-v2", ModelVersion = "2" };
        Assert.Equal([false, true], store.Commit([again, Result(2)], "t", ids));
        Assert.Equal(["r0001", "r0002"], ids);
        Assert.Equal(2, store.ResultCount());
        Assert.Equal(2, store.OutboxCount());
    }

    /// <summary>
    /// Closing an instance that failed on the disk first keeps its open transactions from being finalized later, where
    /// LiteDB 5.0.x can throw and end the process. That reaches into LiteDB's internals; this checks they are the ones
    /// the referenced LiteDB has (an open transaction is found, and a closed one is not).
    /// </summary>
    [Fact]
    public void The_open_transactions_of_a_LiteDB_instance_are_found_for_their_finalizers_to_be_suppressed()
    {
        using var db = new LiteDatabase(new ConnectionString { Filename = Path.Combine(_dir, "tx.db"), Connection = ConnectionType.Direct }, new BsonMapper());
        var col = db.GetCollection("x");
        col.Insert(new BsonDocument { ["a"] = 1 });
        Assert.Equal(0, AbandonedTransactions.SuppressFinalizers(db));
        Assert.True(db.BeginTrans());
        col.Insert(new BsonDocument { ["a"] = 2 });
        Assert.Equal(1, AbandonedTransactions.SuppressFinalizers(db));
        Assert.True(db.Rollback());
        Assert.Equal(0, AbandonedTransactions.SuppressFinalizers(db));
        Assert.Equal(1, col.Count());
    }

    /// <summary>
    /// On a real file system that fills up, a commit fails with the kernel's ENOSPC, promptly, and stores nothing; once
    /// space is back the same store commits again (LiteDB leaves a database that hit a full disk unusable until it is
    /// reopened), and everything committed before, during and after is in the file exactly once, with outbox ids that
    /// go on from the highest this store issued, not from the highest left in the file.
    /// </summary>
    [SmallFileSystemFact]
    public async Task A_full_disk_fails_the_commit_and_the_store_recovers_when_space_returns()
    {
        using var disk = new SmallFileSystem(megabytes: 8);
        string path = Path.Combine(disk.Root, "qana.db");
        using (var store = new ResultStore(path))
        {
            Assert.Equal([true, true], store.Commit([Result(1), Result(2)], "t"));
            // Its PUBACK came: the newest entry goes. The store opened again after the failure below must not give its
            // id to a new entry, as LiteDB's own ids (the highest present, plus one) would.
            store.DeleteOutbox([2]);
            string filler = disk.Fill();

            Task<bool[]> full = Task.Run(() => store.Commit([Result(3), Result(4)], "t"));
            var failure = await Assert.ThrowsAnyAsync<Exception>(() => full.WaitAsync(TimeSpan.FromSeconds(30)));
            Assert.False(failure is TimeoutException, "the commit on a full disk hung instead of failing");
            Assert.True(failure is IOException or LiteException, failure.ToString());
            // Still full: failing again, not hanging and not half-storing.
            var again = await Assert.ThrowsAnyAsync<Exception>(() => Task.Run(() => store.Commit([Result(3)], "t")).WaitAsync(TimeSpan.FromSeconds(30)));
            Assert.False(again is TimeoutException, "a second commit on the full disk hung");

            File.Delete(filler);
            bool[] fresh = await Task.Run(() => store.Commit([Result(3), Result(4)], "t")).WaitAsync(TimeSpan.FromSeconds(30));
            Assert.Equal([true, true], fresh);
            Assert.Equal(4, store.ResultCount());
            long[] ids = store.ReadOutbox(0, 10).Select(e => e.Id).ToArray();
            Assert.Equal(3, ids.Length);
            Assert.Equal(1, ids[0]);
            Assert.All(ids[1..], id => Assert.True(id > 2, $"outbox id {id} was given to an entry before"));
        }
        // The instances closed after the failures are garbage now; collecting them must not run LiteDB code that throws on
        // the finalizer thread, which would end the process.
        for (int i = 0; i < 3; i++) { GC.Collect(); GC.WaitForPendingFinalizers(); }
        using var reopened = new LiteDatabase(new ConnectionString { Filename = path, Connection = ConnectionType.Direct }, new BsonMapper());
        Assert.Equal(["r0001", "r0002", "r0003", "r0004"], reopened.GetCollection("results").FindAll().Select(d => d["_id"].AsString).Order().ToArray());
        Assert.Equal(3, reopened.GetCollection("outbox").Count());
    }
    /// <summary>
    /// Every package on an updates topic adds an update-log entry, from anyone who may publish there: the log keeps the
    /// newest <see cref="ResultStore.MaxUpdateLogEntries"/> of them, and never prunes this device's learned readouts,
    /// which the learner reads at start to know what it already queued.
    /// </summary>
    [Fact]
    public void The_update_log_keeps_the_newest_received_entries_and_every_learned_one()
    {
        string path = Path.Combine(_dir, "qana.db");
        using (var store = new ResultStore(path))
        {
            store.RecordLearnedReadout("learned-1", "gained", "qana/dev/readouts", [1, 2, 3]);
            store.LogUpdate(ResultStore.LearnedTopic, "learned-2", 3, "refused", "lost on held-out cases");
            for (int i = 0; i < ResultStore.MaxUpdateLogEntries + 3; i++)
                store.LogUpdate("qana/dev/updates", $"u{i:D5}", 10, "refused", "unknown signer");
        }

        using var reopened = new ResultStore(path);
        var log = reopened.UpdateLog();
        Assert.Equal(ResultStore.MaxUpdateLogEntries + 2, log.Count);
        Assert.Equal(["learned-1", "learned-2"], log.Where(u => u.Topic == ResultStore.LearnedTopic).Select(u => u.Sha256));
        string[] received = log.Where(u => u.Topic != ResultStore.LearnedTopic).Select(u => u.Sha256).ToArray();
        Assert.Equal("u00003", received[0]);
        Assert.Equal($"u{ResultStore.MaxUpdateLogEntries + 2:D5}", received[^1]);
    }

    /// <summary>
    /// A learned readout's message is queued in the outbox like a result's, and a rebuild can lose its entry the same
    /// way: it is queued again as results are. Before, results were queued again and learned readouts were not, and the
    /// update log's entry (which the learner reads at start as "queued") kept it from being queued ever again.
    /// </summary>
    [Fact]
    public void A_rebuild_queues_again_a_learned_readout_whose_outbox_entry_it_lost()
    {
        string path = Path.Combine(_dir, "qana.db");
        byte[] sent = [1, 2, 3], lost = [4, 5, 6, 7];
        using (var store = new ResultStore(path))
        {
            store.RecordLearnedReadout("a1", "applied", "qana/dev/readouts", sent);
            store.DeleteOutbox(store.ReadOutbox(0, 100).Select(e => e.Id).ToArray());   // delivered; the outbox is empty
            Thread.Sleep(20);   // past the millisecond the outbox emptied in (LiteDB keeps times to the millisecond)
            store.Commit([Result(1)], "qana/dev/results");
            store.RecordLearnedReadout("b2", "applied", "qana/dev/readouts", lost);
        }
        using (var raw = new LiteDatabase(new ConnectionString { Filename = path, Connection = ConnectionType.Direct }, new BsonMapper()))
            Assert.Equal(2, raw.GetCollection("outbox").DeleteAll());
        byte[] file = File.ReadAllBytes(path);
        file[191] = 1;   // rebuild at the next open, as above
        File.WriteAllBytes(path, file);

        using var reopened = new ResultStore(path);
        List<OutboxEntry> queued = reopened.ReadOutbox(0, 100);
        // b2, with r0001; not a1, delivered before the outbox emptied.
        OutboxEntry readout = Assert.Single(queued, e => e.ResultId.StartsWith("readout:", StringComparison.Ordinal));
        Assert.Equal("readout:b2", readout.ResultId);
        Assert.Equal("qana/dev/readouts", readout.Topic);
        Assert.Equal(lost, readout.Payload);
        Assert.Contains("r0001", queued.Select(e => e.ResultId));
        Assert.Contains(", and 1 learned readout not known to be delivered", reopened.Recovery);
    }
}
