using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using QanaEdge.Daemon.Storage;
using QanaEdge.Daemon.Tests.Infrastructure;

namespace QanaEdge.Daemon.Tests;

/// <summary>
/// The store keeps a result for <c>Qana:KeepResultsDays</c> and then deletes it, unless it is still to be sent (in the
/// outbox, or a dead letter) or a clinician labelled it (a case of the readout learner). Before, every result stayed
/// for good, 1–2 kB each, on the disk the captures share.
/// </summary>
public sealed class ResultPruningTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("qana-prune-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>A result with a head input, so that a labelled one is a case of the readout learner.</summary>
    private static StoredResult Result(int i) => ResultStoreTests.Result(i) with { HeadInput = [1, 2, 3], Backbone = "b1" };

    /// <summary>
    /// Seven results: 1–5 delivered (their outbox entries deleted, as a PUBACK does), 2 and 5 labelled, 6 refused by
    /// the broker (a dead letter), 7 still in the outbox. A result is taken from the outbox for its dead letter, so the
    /// dead letter alone must keep it.
    /// </summary>
    private static void StoreSeven(ResultStore store)
    {
        store.Commit([.. Enumerable.Range(1, 7).Select(Result)], "qana/dev/results");
        List<OutboxEntry> outbox = store.ReadOutbox(0, 100);
        store.DeleteOutbox(outbox.Where(e => e.ResultId is "r0001" or "r0002" or "r0003" or "r0004" or "r0005").Select(e => e.Id).ToArray());
        store.DeadLetter(outbox.Single(e => e.ResultId == "r0006"), "quota exceeded", 5);
        store.AddFeedback("r0002", "mel", "dr-a", null, "{}");
        store.AddFeedback("r0005", "bcc", "dr-a", null, "{}");
    }

    private static HashSet<string> Remaining(ResultStore store, IEnumerable<int> ids) =>
        ids.Select(i => $"r{i:D4}").Where(store.HasResult).ToHashSet();

    [Fact]
    public void Delivered_unlabelled_results_older_than_the_cut_are_deleted_batch_after_batch()
    {
        string path = Path.Combine(_dir, "qana.db");
        using (var store = new ResultStore(path))
        {
            StoreSeven(store);
            // Nothing was stored a day ago: the cut leaves every result.
            Assert.Equal(new PruneBatch(0, 0), store.PruneResults(DateTime.UtcNow.AddDays(-1), 0, 100));

            // In batches of two, each starting past the ones the earlier batches kept, as a pass runs them.
            DateTime cut = DateTime.UtcNow.AddMinutes(1);
            int deleted = 0, kept = 0, batches = 0;
            while (true)
            {
                PruneBatch batch = store.PruneResults(cut, kept, 2);
                deleted += batch.Deleted;
                kept += batch.Kept;
                batches++;
                if (batch.Deleted + batch.Kept < 2) break;
            }
            Assert.Equal((3, 4, 4), (deleted, kept, batches));
            Assert.Equal(["r0002", "r0005", "r0006", "r0007"], Remaining(store, Enumerable.Range(1, 7)).Order());
            // The labels, the dead letter and the unsent entry are untouched.
            Assert.Equal(2, store.FeedbackCount());
            Assert.Equal("r0006", store.DeadLetters().Single().ResultId);
            Assert.Equal("r0007", store.ReadOutbox(0, 100).Single().ResultId);
            Assert.Equal(["r0002", "r0005"], store.LabelledCases("b1", out _).Select(c => c.ResultId));
        }

        // The deletions are in the file, and an image whose result was deleted is a new capture when it comes again.
        using var reopened = new ResultStore(path);
        Assert.Equal(4, reopened.ResultCount());
        Assert.Equal([true, false], reopened.Commit([Result(1), Result(2)], "qana/dev/results"));
    }

    /// <summary>
    /// The daemon's loop on a clock the test moves: the first pass a minute after the start deletes nothing (every
    /// result is younger than the day kept), the pass a day later deletes the delivered, unlabelled ones.
    /// </summary>
    [Fact]
    public async Task Passes_run_on_the_clock_and_delete_once_results_are_older_than_kept()
    {
        using var store = new ResultStore(Path.Combine(_dir, "qana.db"));
        StoreSeven(store);
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var log = new RecordingLogger<ResultPruning>();
        await using var pruning = new ResultPruning(store, TimeSpan.FromDays(1), log, time);
        var passes = Channel.CreateUnbounded<PruneBatch>();
        pruning.Pruned += batch => passes.Writer.TryWrite(batch);
        pruning.Start();

        Assert.Equal(new PruneBatch(0, 0), await NextPass(time, ResultPruning.FirstDelay, passes.Reader));
        Assert.Equal(7, store.ResultCount());
        Assert.Equal(new PruningSummary(1, 0, null), pruning.Summary);

        Assert.Equal(new PruneBatch(3, 4), await NextPass(time, ResultPruning.Period, passes.Reader));
        Assert.Equal(["r0002", "r0005", "r0006", "r0007"], Remaining(store, Enumerable.Range(1, 7)).Order());
        Assert.Equal((1.0, 3L), (pruning.Summary.KeepDays, pruning.Summary.DeletedResults));
        Assert.NotNull(pruning.Summary.LastDeletedAtUtc);
        Assert.Equal(1, log.Lines.Count(l => l.Level == LogLevel.Information && l.Message.Contains("STORE: deleted 3 results stored before", StringComparison.Ordinal)
            && l.Message.Contains("4 older ones kept, unsent or labelled", StringComparison.Ordinal)));
    }

    /// <summary>
    /// The update log's entries of learned readouts go after the same period once nothing needs them: a1, delivered and
    /// superseded (its package no longer under the state folder), and d4, a learned readout an update refused. b2 stays,
    /// still applied (the learner reads its entry at start to know it was queued), and c3, whose message is still in the
    /// outbox. Before, every entry of a learned readout stayed for good, one more at each round the device learned.
    /// </summary>
    [Fact]
    public void Entries_of_learned_readouts_go_once_delivered_and_no_longer_applied()
    {
        using var store = new ResultStore(Path.Combine(_dir, "qana.db"));
        store.RecordLearnedReadout("a1", "applied", "qana/dev/readouts", [1]);
        store.RecordLearnedReadout("b2", "applied", "qana/dev/readouts", [2]);
        store.DeleteOutbox(store.ReadOutbox(0, 100).Select(e => e.Id).ToArray());
        store.RecordLearnedReadout("c3", "applied", "qana/dev/readouts", [3]);
        store.LogUpdate(ResultStore.LearnedTopic, "d4", 4, "refused", "not on the learned line");
        store.LogUpdate("qana/dev/updates", "e5", 5, "refused", "unknown signer");
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow.AddDays(2));
        var log = new RecordingLogger<ResultPruning>();
        var pruning = new ResultPruning(store, TimeSpan.FromDays(1), log, time, storedPackages: () => new HashSet<string> { "b2" });

        pruning.RunOnce();

        Assert.Equal(["b2", "c3", "e5"], store.UpdateLog().Select(u => u.Sha256).Order());
        Assert.Equal(1, log.Count("STORE: deleted 2 update-log entries of learned readouts recorded before"));
        Assert.Equal("readout:c3", store.ReadOutbox(0, 100).Single().ResultId);
        // The period holds for them too: nothing recorded within it goes.
        store.RecordLearnedReadout("f6", "applied", "qana/dev/readouts", [6]);
        store.DeleteOutbox(store.ReadOutbox(0, 100).Select(e => e.Id).ToArray());
        new ResultPruning(store, TimeSpan.FromDays(1), log, storedPackages: () => new HashSet<string>()).RunOnce();
        Assert.Contains("f6", store.UpdateLog().Select(u => u.Sha256));
    }

    /// <summary>
    /// Moves the clock by <paramref name="step"/> until the loop reports a pass: the loop may not have begun its wait
    /// when the clock first moves (a wait begun after a move counts from the moved time), so the clock moves again.
    /// </summary>
    private static async Task<PruneBatch> NextPass(FakeTimeProvider time, TimeSpan step, ChannelReader<PruneBatch> passes)
    {
        for (int moves = 0; moves < 100; moves++)
        {
            time.Advance(step);
            using var wait = new CancellationTokenSource(TimeSpan.FromMilliseconds(100));
            try { return await passes.ReadAsync(wait.Token); }
            catch (OperationCanceledException) { }
        }
        throw new TimeoutException("no pass after 100 moves of the clock");
    }
}
