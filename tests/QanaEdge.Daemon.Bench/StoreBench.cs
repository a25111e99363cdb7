using System.Diagnostics;
using LiteDB;
using QanaEdge.Daemon.Storage;

/// <summary>
/// `--store`: the result store on a real LiteDB file, in this process (stopwatch passes, like the engine's `--quick`).
/// An image look-up as the commit makes it (its value a parameter of a cached expression) against the same look-up with
/// the value written into the expression's text (Query.EQ, the form the store used before 2026-12-07), on one file in
/// one run; then <see cref="ResultStore.Commit(IReadOnlyList{StoredResult}, string)"/> in batches of 64 (the store
/// writer's largest), the outbox drained as the publisher drains it, and a pruning pass over every result, a tenth of
/// them labelled.
/// </summary>
internal static class StoreBench
{
    private const int Results = 20_000, Batch = 64, Lookups = 2_000;

    public static void Run()
    {
        string dir = Directory.CreateTempSubdirectory("qana-store-bench-").FullName;
        try
        {
            string path = Path.Combine(dir, "qana.db");
            var commit = new List<double>();
            long allocated = 0;
            using (var store = new ResultStore(path))
            {
                var batch = new List<StoredResult>(Batch);
                for (int i = 0; i < Results; i += Batch)
                {
                    batch.Clear();
                    for (int j = i; j < Math.Min(Results, i + Batch); j++) batch.Add(Result(j));
                    long bytes = GC.GetAllocatedBytesForCurrentThread(), t0 = Stopwatch.GetTimestamp();
                    store.Commit(batch, "qana/bench/results");
                    commit.Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds / batch.Count);
                    allocated += GC.GetAllocatedBytesForCurrentThread() - bytes;
                }
                commit.Sort();
                Console.WriteLine($"commit, batches of {Batch} into a store growing to {Results}: per result p50 {commit[commit.Count / 2]:F3} ms, " +
                    $"p99 {commit[commit.Count * 99 / 100]:F3} ms; {allocated / Results:N0} managed bytes per result");

                var drain = Stopwatch.StartNew();
                int reads = 0;
                while (store.ReadOutbox(0, 128) is { Count: > 0 } entries)
                {
                    reads++;
                    store.DeleteOutbox(entries.Select(e => e.Id).ToArray());
                }
                Console.WriteLine($"outbox drained in {reads} reads of 128 and their deletions: {drain.Elapsed.TotalMilliseconds / Results * 1000:F1} us per result");

                // Every tenth result labelled: kept by the pass, and each later batch starts past those kept before it.
                for (int i = 0; i < Results; i += 10) store.AddFeedback($"r{i:D7}", "mel", null, null, "{}");
                var prune = Stopwatch.StartNew();
                int deleted = 0, kept = 0, batches = 0;
                double worst = 0;
                while (true)
                {
                    long t0 = Stopwatch.GetTimestamp();
                    PruneBatch b = store.PruneResults(DateTime.UtcNow.AddMinutes(1), kept, ResultPruning.BatchSize);
                    worst = Math.Max(worst, Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
                    deleted += b.Deleted;
                    kept += b.Kept;
                    batches++;
                    if (b.Deleted + b.Kept < ResultPruning.BatchSize) break;
                }
                Console.WriteLine($"pruning pass: {deleted} results deleted and {kept} labelled ones kept in {batches} batches of {ResultPruning.BatchSize}, {prune.Elapsed.TotalMilliseconds:F0} ms; " +
                    $"longest batch (the store's lock held) {worst:F1} ms");
            }

            // The two forms of the commit's look-up, alternating, on a store of Results results again.
            using (var store = new ResultStore(path))
                for (int i = 0; i < Results; i += 1000)
                    store.Commit(Enumerable.Range(Results + i, 1000).Select(Result).ToList(), "qana/bench/results");
            using var db = new LiteDatabase(new ConnectionString { Filename = path, Connection = ConnectionType.Direct }, new BsonMapper());
            ILiteCollection<BsonDocument> results = db.GetCollection("results");
            for (int round = 1; round <= 2; round++)
            {
                double literal = Time(i => results.FindOne(Query.EQ("image_sha256", Sha(round * 1_000_000 + i))));
                double parameter = Time(i => results.FindOne(BsonExpression.Create("$.image_sha256 = @0", new BsonValue(Sha(round * 2_000_000 + i)))));
                Console.WriteLine($"image look-up, round {round}: value in the text (Query.EQ) {literal * 1000:F1} us, value a parameter {parameter * 1000:F1} us");
            }
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    /// <summary>Mean milliseconds of <see cref="Lookups"/> look-ups of images the store does not hold (each a new value).</summary>
    private static double Time(Action<int> lookUp)
    {
        long t0 = Stopwatch.GetTimestamp();
        for (int i = 0; i < Lookups; i++) lookUp(i);
        return Stopwatch.GetElapsedTime(t0).TotalMilliseconds / Lookups;
    }

    private static string Sha(int i) => i.ToString("x64", System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>A result the size the daemon stores: a 700-byte payload and a 1024-value head input.</summary>
    private static StoredResult Result(int i) => new(
        ResultId: $"r{i:D7}", ImageSha256: Sha(i), Label: "nv", Confidence: 0.9f, Refer: false, Tiled: false,
        ModelId: "m", ModelVersion: "1", LatencyMs: 2.5, EnergyMillijoules: null, CapturedAt: DateTime.UtcNow, Source: "inbox",
        Payload: new byte[700], LandedTimestamp: i, HeadInput: new sbyte[1024], Backbone: "b");
}
