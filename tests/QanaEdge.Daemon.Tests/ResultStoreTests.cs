using LiteDB;
using QanaEdge.Daemon.Storage;

namespace QanaEdge.Daemon.Tests;

public sealed class ResultStoreTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("qana-store-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static StoredResult Result(int i) => new(
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

    [Fact]
    public void A_result_committed_twice_keeps_one_row_and_one_outbox_entry()
    {
        using var store = new ResultStore(Path.Combine(_dir, "qana.db"));
        Assert.Equal([true, true], store.Commit([Result(1), Result(2)], "t"));
        Assert.Equal([false, true], store.Commit([Result(1), Result(3)], "t"));
        Assert.Equal(3, store.ResultCount());
        Assert.Equal(3, store.OutboxCount());
    }
}
