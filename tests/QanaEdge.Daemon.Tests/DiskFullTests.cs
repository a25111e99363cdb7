using System.Text;
using LiteDB;
using Microsoft.Extensions.Logging.Abstractions;
using QanaEdge.Daemon.Configuration;
using QanaEdge.Daemon.Messaging;
using QanaEdge.Daemon.Storage;
using QanaEdge.Daemon.Tests.Infrastructure;
using QanaEdge.Model.Packaging;

namespace QanaEdge.Daemon.Tests;

/// <summary>
/// The daemon's state folder on a real 16 MB file system that fills up mid-run: what could not be stored is neither
/// acknowledged nor lost, the daemon keeps running, and once space is freed every capture gets exactly one result;
/// a clinician label that arrived while the disk was full is stored when the broker sends it again, and so, when the
/// disk fills again, is a signed update package (applied then).
/// </summary>
public sealed class DiskFullTests : IDisposable
{
    private readonly string _root = TestEnv.TempDir("full");

    public void Dispose()
    {
        try { Directory.Delete(_root, recursive: true); } catch (IOException) { }
    }

    [SmallFileSystemFact]
    public async Task Full_state_disk_holds_captures_feedback_and_updates_until_space_returns_then_stores_each_once_without_a_restart()
    {
        using var vendor = SigningKey.Generate(SignerRole.Vendor);
        string trust = Path.Combine(_root, "trust");
        Directory.CreateDirectory(trust);
        File.WriteAllText(Path.Combine(trust, "vendor.pub"), vendor.PublicKey.ToText());
        byte[] update = PackageSigner.Sign(PackageWriter.ToBytes(ModelUpdateTests.Readout(PackageReader.Load(TestModel.Path_), "0.0.1")), vendor);
        using var disk = new SmallFileSystem(megabytes: 16);
        using var broker = new MosquittoBroker();
        await using var sub = new ResultSubscriber(broker.Port, "qana/devfull/results");
        await sub.ConnectAsync();
        string inbox = Path.Combine(_root, "inbox");
        Directory.CreateDirectory(inbox);
        string[] before = TestEnv.RealImages(10, skip: 800), during = TestEnv.RealImages(20, skip: 810);
        string[] args =
        [
            $"--Qana:Inbox={inbox}", $"--Qana:StateDir={Path.Combine(disk.Root, "state")}", "--Qana:DeviceId=devfull",
            "--Qana:Mqtt:Host=127.0.0.1", $"--Qana:Mqtt:Port={broker.Port}", "--Qana:RescanSeconds=0.5", "--Qana:Workers=2",
            "--Qana:Mqtt:ReconnectMaxSeconds=0.5", "--Qana:Mqtt:RedeliverSeconds=1", $"--Qana:Model={TestModel.Path_}", $"--Qana:TrustDir={trust}",
            "--Qana:MinFreeMegabytes=0",   // done/ is on the full disk too: nothing is deleted to make room here
        ];
        // systemd's notify socket with a 3 s watchdog: WATCHDOG=1 every 1.5 s while the pipeline is healthy.
        using var notify = new NotifySocket(Path.Combine(_root, "notify.sock"));
        using var daemon = new ChildProcess(args, new Dictionary<string, string> { ["NOTIFY_SOCKET"] = notify.Path_, ["WATCHDOG_USEC"] = "3000000" });
        string Log() => string.Join('\n', daemon.Output.TakeLast(30));

        foreach (string image in before) TestEnv.Drop(image, inbox);
        await TestEnv.WaitUntil(() => sub.Results.Count >= before.Length || daemon.HasExited, TimeSpan.FromSeconds(60), "results before the disk fills", Log);
        Assert.False(daemon.HasExited, Log());

        string filler = disk.Fill();
        foreach (string image in during) TestEnv.Drop(image, inbox);
        await TestEnv.WaitUntil(() => daemon.Output.Any(l => l.Contains("Storing", StringComparison.Ordinal) && l.Contains("failed", StringComparison.Ordinal)) || daemon.HasExited,
            TimeSpan.FromSeconds(60), "the daemon to report that it cannot store results", Log);
        TimeSpan fullSince = notify.Now;
        await Task.Delay(TimeSpan.FromSeconds(2));
        Assert.False(daemon.HasExited, Log());
        // Captures whose results could not be stored are still in the inbox, untouched.
        string[] waiting = Directory.GetFiles(inbox, "*.jpg");
        Assert.NotEmpty(waiting);
        Assert.All(waiting, f => Assert.Equal(File.ReadAllBytes(Path.Combine(TestEnv.ImagesDir, Path.GetFileName(f))), File.ReadAllBytes(f)));
        Assert.True(sub.Results.Count + waiting.Length >= before.Length + during.Length, $"{sub.Results.Count} results and {waiting.Length} waiting of {before.Length + during.Length}");

        // A clinician label for a stored result cannot be stored either: it is left unacknowledged at the broker.
        string labelled = sub.Results.Keys.First();
        await sub.PublishAsync("qana/devfull/feedback", Encoding.UTF8.GetBytes($$"""{"result_id":"{{labelled}}","label":"mel","clinician":"dr-full"}"""));
        await TestEnv.WaitUntil(() => daemon.Output.Any(l => l.Contains($"Feedback for result {labelled} could not be stored", StringComparison.Ordinal)) || daemon.HasExited,
            TimeSpan.FromSeconds(30), "the daemon to report that it cannot store the label", Log);

        // The daemon renews its session (RedeliverSeconds) so that the broker sends the label again, without a restart;
        // while the disk is still full each renewal meets the same failure and asks for another.
        await TestEnv.WaitUntil(() => daemon.Output.Count(l => l.Contains("a clinician label could not be stored", StringComparison.Ordinal)) >= 2 || daemon.HasExited,
            TimeSpan.FromSeconds(30), "the session to be renewed for the label, twice while the disk is full", Log);

        // The store writer is retrying, not wedged: the watchdog is still fed well past its 3 s window (under systemd
        // a withheld ping is a restart in a loop, which frees no space), and STATUS says why nothing completes.
        await Task.Delay(fullSince + TimeSpan.FromSeconds(9) - notify.Now is { Ticks: > 0 } rest ? rest : TimeSpan.Zero);
        string Notified() => string.Join(" | ", notify.Lines.Select(l => $"{l.At.TotalSeconds:0.0}s {l.Line}"));
        Assert.True(notify.Lines.Count(l => l.Line == "WATCHDOG=1" && l.At > fullSince + TimeSpan.FromSeconds(4)) >= 2, Notified());
        Assert.Contains(notify.Lines, l => l.Line.StartsWith("STATUS=degraded: disk full", StringComparison.Ordinal));
        File.Delete(filler);
        await TestEnv.WaitUntil(() => (sub.Results.Count >= before.Length + during.Length && Directory.GetFiles(inbox).Length == 0) || daemon.HasExited,
            TimeSpan.FromSeconds(90), "every capture's result once space is back", Log);
        // The retries were logged at the 1st, 10th, 100th ... attempt, not at each (one every 5 s, for as long as the
        // disk stays full), and the commit that worked says after how many.
        string stored = Assert.Single(daemon.Output, l => l.Contains("results after", StringComparison.Ordinal) && l.Contains("Stored", StringComparison.Ordinal));
        int attempts = int.Parse(System.Text.RegularExpressions.Regex.Match(stored, @"after (\d+) attempts").Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        int reported = daemon.Output.Count(l => l.Contains("Storing", StringComparison.Ordinal) && l.Contains("failed (attempt", StringComparison.Ordinal));
        Assert.True(attempts >= 3 && reported == (attempts >= 100 ? 3 : attempts >= 10 ? 2 : 1), $"{reported} failures reported of {attempts} attempts: {stored}");
        await TestEnv.WaitUntil(() => daemon.Output.Any(l => l.Contains($"Feedback stored: result {labelled}", StringComparison.Ordinal)) || daemon.HasExited,
            TimeSpan.FromSeconds(60), "the label, sent again by the broker, to be stored once space is back", Log);
        Assert.Equal("STATUS=running", notify.Lines.Last(l => l.Line.StartsWith("STATUS=", StringComparison.Ordinal)).Line);

        // The disk fills again. A signed readout update passes its checks but can be neither written under the state
        // folder nor recorded in the update log: it is not acknowledged and not applied, and it has the session renewed
        // in the same way, again after each renewal while the disk is full.
        filler = disk.Fill();
        await sub.PublishAsync("qana/devfull/updates", update);
        await TestEnv.WaitUntil(() => daemon.Output.Count(l => l.Contains("an update package could not be", StringComparison.Ordinal)) >= 2 || daemon.HasExited,
            TimeSpan.FromSeconds(30), "the session to be renewed for the update, twice while the disk is full", Log);
        Assert.DoesNotContain(daemon.Output, l => l.Contains("MODEL: now", StringComparison.Ordinal));
        File.Delete(filler);
        await TestEnv.WaitUntil(() => daemon.Output.Any(l => l.Contains("MODEL: now", StringComparison.Ordinal) && l.Contains("0.0.1", StringComparison.Ordinal)) || daemon.HasExited,
            TimeSpan.FromSeconds(60), "the update, sent again by the broker, to be applied once space is back", Log);
        Assert.False(daemon.HasExited, Log());
        daemon.Signal("TERM");
        Assert.True(daemon.WaitForExit(TimeSpan.FromSeconds(30)));
        Assert.Equal(0, daemon.ExitCode);
        sub.AssertOneResultIdPerImage(before.Concat(during));
        using var db = new LiteDatabase(new ConnectionString { Filename = Path.Combine(disk.Root, "state", "qana.db"), Connection = ConnectionType.Direct }, new BsonMapper());
        var labels = db.GetCollection("feedback").FindAll().ToList();
        Assert.Single(labels);
        Assert.Equal(labelled, labels[0]["result_id"].AsString);
        Assert.Equal("mel", labels[0]["label"].AsString);
        // The update is on record once as applied; an attempt recorded while the disk was full says not-stored.
        var outcomes = db.GetCollection("updates").FindAll().Select(u => u["outcome"].AsString).ToList();
        Assert.Equal(1, outcomes.Count(o => o == "applied"));
        Assert.All(outcomes, o => Assert.Contains(o, new[] { "applied", "not-stored" }));
    }

    /// <summary>
    /// Results the broker acknowledged while the disk is full cannot be deleted from the outbox. They are sent once, not
    /// again at every pass of the drain, and deleted once space is back. Before, the failed deletion ended the drain and
    /// the next one, 0.2 s later, sent them all again, with a warning each time, for as long as the disk stayed full.
    /// </summary>
    [SmallFileSystemFact]
    public async Task Results_acknowledged_while_the_disk_is_full_are_sent_once_and_deleted_once_space_is_back()
    {
        using var disk = new SmallFileSystem(megabytes: 4);
        using var broker = new MosquittoBroker();
        await using var sub = new ResultSubscriber(broker.Port, "qana/devdel/results");
        await sub.ConnectAsync();
        using var store = new ResultStore(Path.Combine(disk.Root, "qana.db"));
        const int count = 20;
        store.Commit([.. Enumerable.Range(0, count).Select(i => new StoredResult($"r{i:D4}", $"{i:x64}", "nv", 0.9f, false, false, "m", "1", 2.5,
            null, DateTime.UtcNow, "inbox", Encoding.UTF8.GetBytes($$"""{"result_id":"r{{i:D4}}"}"""), i))], "qana/devdel/results");
        string filler = disk.Fill();

        var options = new MqttOptions { Host = "127.0.0.1", Port = broker.Port, ClientId = "qanad-devdel", ReconnectMaxSeconds = 0.5 };
        var log = new RecordingLogger<OutboxPublisher>();
        await using var link = new MqttLink(options, "devdel", NullLogger<MqttLink>.Instance);
        await using var publisher = new OutboxPublisher(store, link, options, log);
        link.Start(() => Encoding.UTF8.GetBytes("""{"state":"online"}"""));
        publisher.Start();
        string Log() => string.Join('\n', log.Lines.Select(l => $"{l.Level}: {l.Message}"));

        // Ten failed deletions in a row (the drain has passed over the outbox again and again), or a result sent twice.
        await TestEnv.WaitUntil(() => sub.Results.Values.Any(q => q.Count > 1) || (sub.Results.Count == count && log.Count("(10 in a row") == 1),
            TimeSpan.FromSeconds(60), "ten failed deletions of the acknowledged results", Log);
        Assert.All(sub.Results.Values, copies => Assert.Single(copies));
        Assert.Equal(count, store.OutboxCount());

        File.Delete(filler);
        // The publisher deletes them first and says so after: wait for its line too.
        await TestEnv.WaitUntil(() => store.OutboxCount() == 0 && log.Count("deleted again") >= 1, TimeSpan.FromSeconds(60),
            "the acknowledged results to be deleted once space is back", Log);
        Assert.Equal(count, sub.Results.Count);
        Assert.All(sub.Results.Values, copies => Assert.Single(copies));
        Assert.Equal(1, log.Count("deleted again"));
    }

    /// <summary>
    /// An outbox the store cannot read (its disk gone read-only under the daemon) fails every drain while the link is
    /// up. The drain is retried with a growing pause and logged at the 1st, 10th, 100th ... failure in a row, and sends
    /// again once the store can be read. Before, it was retried every ReconnectMinSeconds with a warning each time.
    /// </summary>
    [SmallFileSystemFact]
    public async Task An_outbox_that_cannot_be_read_is_retried_with_a_growing_pause_and_few_warnings()
    {
        using var disk = new SmallFileSystem(megabytes: 4);
        string state = Directory.CreateDirectory(Path.Combine(disk.Root, "state")).FullName;
        string readOnly = Directory.CreateDirectory(Path.Combine(_root, "readonly")).FullName;
        using var broker = new MosquittoBroker();
        await using var sub = new ResultSubscriber(broker.Port, "qana/devro/results");
        await sub.ConnectAsync();
        using var store = new ResultStore(Path.Combine(state, "qana.db"));
        var options = new MqttOptions { Host = "127.0.0.1", Port = broker.Port, ClientId = "qanad-devro", ReconnectMaxSeconds = 0.5 };
        var log = new RecordingLogger<OutboxPublisher>();
        await using var link = new MqttLink(options, "devro", NullLogger<MqttLink>.Instance);
        await using var publisher = new OutboxPublisher(store, link, options, log);
        link.Start(() => Encoding.UTF8.GetBytes("""{"state":"online"}"""));
        publisher.Start();
        string Log() => string.Join('\n', log.Lines.Select(l => $"{l.Level}: {l.Message}"));
        StoredResult Result(int i) => new($"r{i:D4}", $"{i:x64}", "nv", 0.9f, false, false, "m", "1", 2.5,
            null, DateTime.UtcNow, "inbox", Encoding.UTF8.GetBytes($$"""{"result_id":"r{{i:D4}}"}"""), i);
        store.Commit([Result(1)], "qana/devro/results");
        // The publisher deletes the entry only after its PUBACK, which comes after the subscriber has it: an entry still
        // there when the disk goes read-only would fail its deletion too, with "(10 in a row" lines of its own.
        await TestEnv.WaitUntil(() => sub.Results.Count == 1 && store.OutboxCount() == 0, TimeSpan.FromSeconds(30), "the first result", Log);

        // The state folder's path now leads to a read-only file system, as after a remount on a disk error; the store's
        // open files still write to the old one, until a write fails there (the disk is full) and the store, which then
        // closes its files, cannot open them again.
        SmallFileSystem.Privileged("mount", "--bind", readOnly, state);
        SmallFileSystem.Privileged("mount", "-o", "remount,ro,bind", state);
        try
        {
            string filler = disk.Fill();
            Assert.ThrowsAny<IOException>(() => store.Commit([Result(2)], "qana/devro/results"));
            File.Delete(filler);
            // The idle drain reads the outbox again when woken (the store wakes it as it queues, and the link as it
            // connects), else once a minute: the failed commit queued nothing, so it is woken as a later one would.
            publisher.Wake();
            await TestEnv.WaitUntil(() => log.Count("Outbox drain interrupted") >= 10 || log.Count("Outbox drain interrupted (10 in a row") == 1,
                TimeSpan.FromSeconds(60), "ten failed drains", Log);
            Assert.Equal(2, log.Count("Outbox drain interrupted")); // the 1st and the 10th
        }
        finally { SmallFileSystem.Privileged("umount", state); }

        store.Commit([Result(3)], "qana/devro/results");
        await TestEnv.WaitUntil(() => sub.Results.ContainsKey("r0003"), TimeSpan.FromSeconds(30), "a result once the store can be read again", Log);
    }

    /// <summary>
    /// A store whose file cannot be opened again after a failed write (here EPERM: the state folder's path leads to an
    /// immutable file, as a permission changed under the daemon would) is retried like a full disk, and the result is
    /// stored once the file can be opened. Before, the UnauthorizedAccessException was not taken for a storage
    /// failure: it ended the store writer, unlogged, and no capture was stored again until a restart.
    /// </summary>
    [SmallFileSystemFact]
    public async Task A_store_file_that_cannot_be_opened_again_is_retried_until_it_can()
    {
        using var disk = new SmallFileSystem(megabytes: 16);
        string state = Path.Combine(disk.Root, "state");
        string locked = Directory.CreateDirectory(Path.Combine(_root, "locked")).FullName;
        File.WriteAllBytes(Path.Combine(locked, "qana.db"), []);
        SmallFileSystem.Privileged("chattr", "+i", Path.Combine(locked, "qana.db"));
        using var broker = new MosquittoBroker();
        await using var sub = new ResultSubscriber(broker.Port, "qana/devperm/results");
        await sub.ConnectAsync();
        string[] images = TestEnv.RealImages(2, skip: 830);
        try
        {
            await using var daemon = new DaemonRunner(_root, broker.Port, "devperm", null, $"--Qana:StateDir={state}", $"--Qana:DoneDir={Path.Combine(_root, "done")}");
            await daemon.StartAsync();
            string Log() => string.Join(" | ", daemon.Log.Events.TakeLast(10).Select(e => e.Message));
            TestEnv.Drop(images[0], daemon.Inbox);
            await TestEnv.WaitUntil(() => sub.Results.Count == 1, TimeSpan.FromSeconds(60), "the first result", Log);

            SmallFileSystem.Privileged("mount", "--bind", locked, state);
            string filler;
            try
            {
                filler = disk.Fill();
                TestEnv.Drop(images[1], daemon.Inbox);
                await TestEnv.WaitUntil(() => daemon.Log.Events.Any(e => e.Message.StartsWith("Storing 1 results failed", StringComparison.Ordinal) && e.Message.Contains("denied", StringComparison.Ordinal)),
                    TimeSpan.FromSeconds(60), "the store writer to meet the file it cannot open, and to say so", Log);
            }
            finally { SmallFileSystem.Privileged("umount", state); }
            File.Delete(filler);

            await TestEnv.WaitUntil(() => sub.Results.Count == 2, TimeSpan.FromSeconds(60), "the second result once the store opens again", Log);
            await TestEnv.WaitUntil(() => Directory.GetFiles(daemon.Inbox).Length == 0, TimeSpan.FromSeconds(30), "both captures acknowledged", Log);
            sub.AssertOneResultIdPerImage(images);
        }
        finally { SmallFileSystem.Privileged("chattr", "-i", Path.Combine(locked, "qana.db")); }
    }

    /// <summary>
    /// A stop while the store writer retries a full disk gives up the commit instead of retrying on: the captures stay
    /// in the inbox, untouched, and get their results at the next start once there is space. Before, the stop waited
    /// 10 s for the retrying writer and 10 s more for the acknowledger behind it, past systemd's 30 s stop timeout once
    /// the workers also waited behind a full channel.
    /// </summary>
    [SmallFileSystemFact]
    public async Task A_stop_while_the_disk_is_full_gives_up_the_commit_and_leaves_the_captures_for_the_next_start()
    {
        using var disk = new SmallFileSystem(megabytes: 16);
        using var broker = new MosquittoBroker();
        await using var sub = new ResultSubscriber(broker.Port, "qana/devstop/results");
        await sub.ConnectAsync();
        string[] images = TestEnv.RealImages(6, skip: 840);
        string[] args = [$"--Qana:StateDir={Path.Combine(disk.Root, "state")}", $"--Qana:DoneDir={Path.Combine(_root, "done")}"];
        var daemon = new DaemonRunner(_root, broker.Port, "devstop", null, args);
        await daemon.StartAsync();
        string filler = disk.Fill();
        foreach (string image in images) TestEnv.Drop(image, daemon.Inbox);
        await TestEnv.WaitUntil(() => daemon.Log.Events.Any(e => e.Message.Contains("results failed (attempt 1;", StringComparison.Ordinal)),
            TimeSpan.FromSeconds(60), "the store writer to fail", () => string.Join(" | ", daemon.Log.Events.TakeLast(10).Select(e => e.Message)));

        await daemon.DisposeAsync();
        Assert.Contains(daemon.Log.Events, e => e.Level == Serilog.Events.LogEventLevel.Warning
            && e.Message.Contains("results not stored: their captures stay in the inbox for the next start", StringComparison.Ordinal));
        Assert.Empty(sub.Results);
        string[] waiting = Directory.GetFiles(daemon.Inbox);
        Assert.Equal(images.Select(Path.GetFileName).Order(), waiting.Select(Path.GetFileName).Order());
        Assert.All(waiting, f => Assert.Equal(File.ReadAllBytes(Path.Combine(TestEnv.ImagesDir, Path.GetFileName(f))), File.ReadAllBytes(f)));

        File.Delete(filler);
        await using var again = new DaemonRunner(_root, broker.Port, "devstop", null, args);
        await again.StartAsync();
        await TestEnv.WaitUntil(() => sub.Results.Count == images.Length && Directory.GetFiles(again.Inbox).Length == 0, TimeSpan.FromSeconds(60), "every result after the restart");
        sub.AssertOneResultIdPerImage(images);
    }

    /// <summary>
    /// Dead letters in the store and a full state disk at start: the daemon starts (and takes captures), says it could
    /// not move the dead letters back, and moves and delivers them once space is back, without a restart. Before, the
    /// move failed out of the start, the daemon exited ("cannot start") and systemd restarted it into the same failure;
    /// the retention that frees the disk starts after it, so it never ran.
    /// </summary>
    [SmallFileSystemFact]
    public async Task Dead_letters_and_a_full_disk_at_start_do_not_stop_the_start_and_are_delivered_once_space_is_back()
    {
        using var disk = new SmallFileSystem(megabytes: 8);
        using var broker = new MosquittoBroker();
        await using var sub = new ResultSubscriber(broker.Port, "qana/devdlfull/results");
        await sub.ConnectAsync();
        string state = Path.Combine(disk.Root, "state");
        Directory.CreateDirectory(state);
        using (var store = new ResultStore(Path.Combine(state, "qana.db")))
        {
            store.Commit([.. Enumerable.Range(1, 2).Select(i => new StoredResult($"dl{i}", $"{i:x64}", "nv", 0.9f, false, false, "m", "1", 2.5,
                null, DateTime.UtcNow, "inbox", Encoding.UTF8.GetBytes($$"""{"result_id":"dl{{i}}"}"""), i))], "qana/devdlfull/results");
            foreach (OutboxEntry entry in store.ReadOutbox(0, 10)) store.DeadLetter(entry, "NotAuthorized (an ACL since fixed)", 5);
            Assert.Equal(2, store.DeadLetterCount());
        }
        string inbox = Path.Combine(_root, "inbox");
        Directory.CreateDirectory(inbox);
        string filler = disk.Fill();
        using var daemon = new ChildProcess([
            $"--Qana:Inbox={inbox}", $"--Qana:StateDir={state}", "--Qana:DeviceId=devdlfull",
            "--Qana:Mqtt:Host=127.0.0.1", $"--Qana:Mqtt:Port={broker.Port}", "--Qana:RescanSeconds=0.5", "--Qana:Workers=2",
            "--Qana:Mqtt:ReconnectMaxSeconds=0.5", $"--Qana:Model={TestModel.Path_}", "--Qana:MinFreeMegabytes=0",
        ]);
        string Log() => string.Join('\n', daemon.Output.TakeLast(30));

        await TestEnv.WaitUntil(() => daemon.Output.Any(l => l.Contains("Ready: drop images", StringComparison.Ordinal)) || daemon.HasExited,
            TimeSpan.FromSeconds(60), "the daemon to start", Log);
        Assert.False(daemon.HasExited, Log());
        Assert.Contains(daemon.Output, l => l.Contains("Dead letters not moved back to the outbox (1 in a row", StringComparison.Ordinal));
        Assert.Empty(sub.Results);

        File.Delete(filler);
        await TestEnv.WaitUntil(() => sub.Results.Count == 2 || daemon.HasExited, TimeSpan.FromSeconds(60), "the dead letters to be delivered once space is back", Log);
        Assert.Equal(["dl1", "dl2"], sub.Results.Keys.Order());
        Assert.Contains(daemon.Output, l => l.Contains("2 dead letters (results the broker refused) are back in the outbox", StringComparison.Ordinal));
        daemon.Signal("TERM");
        Assert.True(daemon.WaitForExit(TimeSpan.FromSeconds(30)));
        Assert.Equal(0, daemon.ExitCode);
        using var after = new ResultStore(Path.Combine(state, "qana.db"));
        Assert.Equal((0, 0), (after.DeadLetterCount(), after.OutboxCount()));
    }
}
