using System.Net.Sockets;
using System.Text;
using QanaEdge.Daemon.Tests.Infrastructure;

namespace QanaEdge.Daemon.Tests;

/// <summary>The daemon as a separate process: killed with SIGKILL mid-run, and speaking sd_notify to a socket.</summary>
public sealed class ProcessTests : IDisposable
{
    private readonly string _root = TestEnv.TempDir("proc");

    public void Dispose()
    {
        try { Directory.Delete(_root, recursive: true); } catch (IOException) { }
    }

    private string[] Args(string device, int port) =>
    [
        $"--Qana:Inbox={Path.Combine(_root, "inbox")}", $"--Qana:StateDir={Path.Combine(_root, "state")}", $"--Qana:DeviceId={device}",
        "--Qana:Mqtt:Host=127.0.0.1", $"--Qana:Mqtt:Port={port}", "--Qana:RescanSeconds=0.5", "--Qana:Workers=2",
        "--Qana:Mqtt:ReconnectMaxSeconds=0.5", $"--Qana:Model={TestModel.Path_}",
    ];

    /// <summary>The kernels' cap is read from the environment once per process; a mistyped value used to escape as a
    /// TypeInitializationException (with a stack trace) when the model's engine was built.</summary>
    [Fact]
    public void A_mistyped_kernel_cap_stops_the_start_as_bad_configuration()
    {
        using var child = new ChildProcess(Args("devisa", TestEnv.FreeTcpPort()), new Dictionary<string, string> { ["QANA_KERNEL_ISA"] = "neon" });
        Assert.True(child.WaitForExit(TimeSpan.FromSeconds(60)), "qanad did not exit");
        // The output is read asynchronously: give the last lines a moment to arrive.
        for (int i = 0; i < 50 && !child.Output.Any(l => l.StartsWith("qanad:", StringComparison.Ordinal)); i++) Thread.Sleep(100);
        string output = string.Join('\n', child.Output);
        Assert.True(child.ExitCode == 2, $"exit {child.ExitCode}: {output}");
        Assert.Contains("qanad: configuration: QANA_KERNEL_ISA='neon' is not a kernel cap: expected avxvnni, avx2, sse2 or portable", output);
        Assert.DoesNotContain("Exception", output);
    }

    /// <summary>
    /// A second daemon on the same state folder refuses to start (exit 1, one line), and one started once the first has
    /// been killed (SIGKILL: the kernel releases its lock) runs. Before, both ran: LiteDB's direct mode takes no lock,
    /// so both wrote one store file and claimed the same captures.
    /// </summary>
    [Fact]
    public async Task A_second_daemon_on_the_same_state_folder_refuses_to_start()
    {
        using var broker = new MosquittoBroker();
        await using var sub = new ResultSubscriber(broker.Port, "qana/devlock/status");
        await sub.ConnectAsync();
        using var first = new ChildProcess(Args("devlock", broker.Port));
        await TestEnv.WaitUntil(() => sub.Messages.Any(m => m.Topic == "qana/devlock/status"), TimeSpan.FromSeconds(60), "the first daemon online");

        using (var second = new ChildProcess(Args("devlock2", broker.Port)))
        {
            Assert.True(second.WaitForExit(TimeSpan.FromSeconds(60)), "the second qanad did not exit");
            for (int i = 0; i < 50 && !second.Output.Any(l => l.StartsWith("qanad:", StringComparison.Ordinal)); i++) Thread.Sleep(100);
            string output = string.Join('\n', second.Output);
            Assert.True(second.ExitCode == 1, $"exit {second.ExitCode}: {output}");
            Assert.Contains($"qanad: cannot start: another qanad is running on the state folder {Path.Combine(_root, "state")}", output);
            Assert.DoesNotContain("Exception", output);
        }
        Assert.False(first.HasExited);

        first.Signal("KILL");
        Assert.True(first.WaitForExit(TimeSpan.FromSeconds(10)));
        using var third = new ChildProcess(Args("devlock", broker.Port));
        await TestEnv.WaitUntil(() => third.Output.Any(l => l.Contains("Ready: drop images", StringComparison.Ordinal)) || third.HasExited,
            TimeSpan.FromSeconds(60), "the daemon started after the first was killed", () => string.Join('\n', third.Output.TakeLast(10)));
        Assert.False(third.HasExited, string.Join('\n', third.Output));
    }

    /// <summary>
    /// The will ("offline") is delayed by the broker and dropped when the same session comes back in time: a daemon
    /// killed and restarted at once shows no "offline", one that stays down does, after the delay.
    /// </summary>
    [Fact]
    public async Task The_offline_status_comes_after_the_will_delay_and_not_when_the_daemon_is_back_in_time()
    {
        using var broker = new MosquittoBroker();
        await using var sub = new ResultSubscriber(broker.Port, "qana/devwill/status");
        await sub.ConnectAsync();
        string[] States() => [.. sub.Messages.Where(m => m.Topic == "qana/devwill/status")
            .Select(m => System.Text.Json.JsonDocument.Parse(m.Payload).RootElement.GetProperty("state").GetString()!)];

        using (var first = new ChildProcess(Args("devwill", broker.Port)))
        {
            await TestEnv.WaitUntil(() => States().Contains("online"), TimeSpan.FromSeconds(60), "the first online status");
            first.Signal("KILL");
            Assert.True(first.WaitForExit(TimeSpan.FromSeconds(10)));
        }
        using (var second = new ChildProcess(Args("devwill", broker.Port)))
        {
            await TestEnv.WaitUntil(() => States().Count(s => s == "online") >= 2, TimeSpan.FromSeconds(60), "the restarted daemon's online status");
            await Task.Delay(TimeSpan.FromSeconds(Daemon.Messaging.MqttLink.WillDelaySeconds + 2));
            Assert.DoesNotContain("offline", States()); // back within the delay: the will was dropped

            var killed = System.Diagnostics.Stopwatch.StartNew();
            second.Signal("KILL");
            Assert.True(second.WaitForExit(TimeSpan.FromSeconds(10)));
            await TestEnv.WaitUntil(() => States().LastOrDefault() == "offline", TimeSpan.FromSeconds(Daemon.Messaging.MqttLink.WillDelaySeconds + 20), "the will");
            Assert.True(killed.Elapsed >= TimeSpan.FromSeconds(Daemon.Messaging.MqttLink.WillDelaySeconds - 1), $"offline after {killed.Elapsed}");
        }
    }

    [Fact]
    public async Task Daemon_killed_with_SIGKILL_mid_run_and_restarted_gives_every_image_exactly_one_result_id()
    {
        using var broker = new MosquittoBroker();
        await using var sub = new ResultSubscriber(broker.Port, "qana/devkill/results");
        await sub.ConnectAsync();
        string inbox = Path.Combine(_root, "inbox");
        Directory.CreateDirectory(inbox);
        // Enough images that the kill lands mid-run even when this process is starved of a core for a second or two
        // while the child classifies at full speed (about 250 images/s here): 150 images take the child well under a second.
        string[] images = TestEnv.RealImages(400, skip: 600);
        foreach (string image in images) TestEnv.Drop(image, inbox);

        using (var first = new ChildProcess(Args("devkill", broker.Port)))
        {
            await TestEnv.WaitUntil(() => sub.Results.Count >= 5 || first.HasExited, TimeSpan.FromSeconds(60), "first results from the child");
            Assert.False(first.HasExited, string.Join('\n', first.Output));
            first.Signal("KILL");
            Assert.True(first.WaitForExit(TimeSpan.FromSeconds(10)));
        }
        int beforeRestart = sub.Results.Count;
        Assert.True(beforeRestart < images.Length, "the kill must land mid-run for this test to mean anything");

        using (var second = new ChildProcess(Args("devkill", broker.Port)))
        {
            await TestEnv.WaitUntil(() => sub.Results.Count >= images.Length || second.HasExited, TimeSpan.FromSeconds(90), "all results after the restart");
            Assert.False(second.HasExited, string.Join('\n', second.Output));
            await TestEnv.WaitUntil(() => Directory.GetFiles(inbox).Length == 0, TimeSpan.FromSeconds(30), "inbox to empty");
            second.Signal("TERM");
            Assert.True(second.WaitForExit(TimeSpan.FromSeconds(30)));
            Assert.Equal(0, second.ExitCode);
        }
        sub.AssertOneResultIdPerImage(images);
    }

    [Fact]
    public async Task Sd_notify_protocol_READY_WATCHDOG_STOPPING_on_a_datagram_socket()
    {
        string socketPath = Path.Combine(_root, "notify.sock");
        using var socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        socket.Bind(new UnixDomainSocketEndPoint(socketPath));
        var received = new List<string>();
        var reader = Task.Run(() =>
        {
            var buffer = new byte[4096];
            socket.ReceiveTimeout = 30_000;
            while (true)
            {
                int n;
                try { n = socket.Receive(buffer); } catch (SocketException) { return; }
                string msg = Encoding.UTF8.GetString(buffer, 0, n);
                lock (received) received.Add(msg);
                if (msg.Contains("STOPPING=1")) return;
            }
        });
        // No broker listens on this port: READY=1 must not wait for one.
        int deadPort = TestEnv.FreeTcpPort();
        using var child = new ChildProcess(Args("devnotify", deadPort), new Dictionary<string, string>
        {
            ["NOTIFY_SOCKET"] = socketPath,
            ["WATCHDOG_USEC"] = "600000",
        });
        string[] Snapshot() { lock (received) return received.ToArray(); }
        await TestEnv.WaitUntil(() => Snapshot().Count(m => m.Contains("WATCHDOG=1")) >= 2 || child.HasExited, TimeSpan.FromSeconds(30), "READY and two watchdog pings");
        Assert.False(child.HasExited, string.Join('\n', child.Output));
        child.Signal("TERM");
        Assert.True(child.WaitForExit(TimeSpan.FromSeconds(30)));
        await reader.WaitAsync(TimeSpan.FromSeconds(5));
        string[] messages = Snapshot();
        int ready = Array.FindIndex(messages, m => m.Split('\n').Contains("READY=1"));
        int firstPing = Array.FindIndex(messages, m => m.Split('\n').Contains("WATCHDOG=1"));
        int stopping = Array.FindIndex(messages, m => m.Split('\n').Contains("STOPPING=1"));
        Assert.True(ready >= 0, string.Join(" | ", messages));
        Assert.True(firstPing >= 0, string.Join(" | ", messages));
        Assert.True(stopping > ready, string.Join(" | ", messages));
        Assert.Equal(0, child.ExitCode);
    }
}
