using System.Text;
using Microsoft.Extensions.Logging;
using QanaEdge.Daemon.Configuration;
using QanaEdge.Daemon.Messaging;
using QanaEdge.Daemon.Tests.Infrastructure;

namespace QanaEdge.Daemon.Tests;

/// <summary>The link's own behaviour: while its broker is away (a real loopback port where nothing listens), and at rest with a real mosquitto.</summary>
public sealed class MqttLinkTests
{
    /// <summary>
    /// A broker that stays down fails every connect attempt. Each tenth failure was logged, a line every 100 s at the
    /// default backoff, for as long as the outage lasted; the 1st, 10th, 100th ... are logged now.
    /// </summary>
    [Fact]
    public async Task Connect_failures_while_the_broker_is_down_are_logged_at_1_10_100()
    {
        int port = TestEnv.FreeTcpPort(); // nothing listens: each connect is refused at once
        var options = new MqttOptions { Host = "127.0.0.1", Port = port, ClientId = "qanad-devdown", ReconnectMinSeconds = 0.01, ReconnectMaxSeconds = 0.01 };
        var log = new RecordingLogger<MqttLink>();
        await using (var link = new MqttLink(options, "devdown", log))
        {
            link.Start(() => Encoding.UTF8.GetBytes("""{"state":"online"}"""));
            await TestEnv.WaitUntil(() => log.Count("failed (100x") == 1, TimeSpan.FromSeconds(60), "the 100th failed connect",
                () => string.Join('\n', log.Lines.TakeLast(3).Select(l => l.Message)));
        }
        string[] upTo100 = log.Lines.Where(l => l.Level == LogLevel.Warning && l.Message.StartsWith($"MQTT connect to 127.0.0.1:{port} failed (", StringComparison.Ordinal))
            .Select(l => l.Message).Where(m => Failures(m) <= 100).ToArray();
        Assert.Equal(3, upTo100.Length); // the 1st, the 10th and the 100th, not every tenth
        Assert.Equal([1, 10, 100], upTo100.Select(Failures));
    }

    /// <summary>
    /// A broker host name that does not resolve is said as such in the connect failure's line: MQTTnet's message is
    /// only "Error while connecting host 'Unspecified/name:port'", and the resolver's answer, in its inner exception,
    /// was left out, so the line did not tell a misspelt host from a broker that is down.
    /// </summary>
    [Fact]
    public async Task A_host_name_that_does_not_resolve_is_said_in_the_connect_failure()
    {
        const string host = "qana-broker.invalid";   // RFC 2606: never resolves
        string resolver = (await Assert.ThrowsAnyAsync<System.Net.Sockets.SocketException>(() => System.Net.Dns.GetHostAddressesAsync(host))).Message;
        var options = new MqttOptions { Host = host, Port = 1883, ClientId = "qanad-devdns", ReconnectMinSeconds = 0.01, ReconnectMaxSeconds = 0.01 };
        var log = new RecordingLogger<MqttLink>();
        await using (var link = new MqttLink(options, "devdns", log))
        {
            link.Start(() => Encoding.UTF8.GetBytes("""{"state":"online"}"""));
            await TestEnv.WaitUntil(() => log.Count("failed (1x") == 1, TimeSpan.FromSeconds(60), "the first failed connect");
        }
        string line = log.Lines.First(l => l.Message.Contains("failed (1x", StringComparison.Ordinal)).Message;
        Assert.Contains($"{host}:1883", line, StringComparison.Ordinal);
        Assert.Contains(resolver.TrimEnd('.'), line, StringComparison.Ordinal);
    }

    /// <summary>
    /// MQTTnet's keep-alive loop is off (it woke the process every 250 ms at rest) and the link pings itself: the
    /// CONNECT must still announce the keep-alive, so that the broker drops a device that has gone silent and publishes
    /// its will, and the link must ping within it, or the broker drops a device that is only idle. Mosquitto drops a
    /// client silent for 1.5 times what it announced, found by a check it makes every few seconds (Debian 12's 2.0.11
    /// dropped a silent client that had announced 1 s after 4.3 s); an idle link that did not ping would be on another
    /// session after 8 s.
    /// </summary>
    [Fact]
    public async Task An_idle_link_announces_its_keep_alive_and_pings_within_it()
    {
        using var broker = new MosquittoBroker();
        var options = new MqttOptions { Host = "127.0.0.1", Port = broker.Port, ClientId = "qanad-devidle", KeepAliveSeconds = 1, ReconnectMaxSeconds = 0.5 };
        var log = new RecordingLogger<MqttLink>();
        await using var link = new MqttLink(options, "devidle", log);
        link.Start(() => Encoding.UTF8.GetBytes("""{"state":"online"}"""));
        LinkSession first = await link.WaitConnectedAsync(new CancellationTokenSource(TimeSpan.FromSeconds(30)).Token);

        await Task.Delay(TimeSpan.FromSeconds(8));

        Assert.Contains("as qanad-devidle (p5, c0, k1", broker.Log, StringComparison.Ordinal);
        Assert.DoesNotContain("qanad-devidle has exceeded timeout", broker.Log, StringComparison.Ordinal);
        Assert.Same(first, link.Current);
        Assert.Equal(0, log.Count("retired"));
    }

    /// <summary>
    /// A broker that stops answering while the device has nothing to send (SIGSTOP: its sockets stay open) is found by
    /// the ping that gets no PINGRESP, and the link connects again once the broker is back; before, MQTTnet's own
    /// keep-alive loop found it.
    /// </summary>
    [Fact]
    public async Task A_broker_frozen_while_the_link_is_idle_is_found_by_the_ping_and_the_link_comes_back()
    {
        using var broker = new MosquittoBroker();
        var options = new MqttOptions { Host = "127.0.0.1", Port = broker.Port, ClientId = "qanad-devfrozen", KeepAliveSeconds = 1, TimeoutSeconds = 1, ReconnectMaxSeconds = 0.5 };
        var log = new RecordingLogger<MqttLink>();
        await using var link = new MqttLink(options, "devfrozen", log);
        link.Start(() => Encoding.UTF8.GetBytes("""{"state":"online"}"""));
        LinkSession first = await link.WaitConnectedAsync(new CancellationTokenSource(TimeSpan.FromSeconds(30)).Token);
        string Log() => string.Join('\n', log.Lines.Select(l => $"{l.Level}: {l.Message}"));

        broker.Freeze();
        await TestEnv.WaitUntil(() => first.IsLost, TimeSpan.FromSeconds(30), "the link to give up on the frozen broker", Log);
        Assert.Equal(1, log.Count($"MQTT session {first.Number} to 127.0.0.1:{broker.Port} retired: no PINGRESP within 1 s"));
        broker.Thaw();
        LinkSession again = await link.WaitConnectedAsync(new CancellationTokenSource(TimeSpan.FromSeconds(60)).Token);
        Assert.True(again.Number > first.Number);
    }

    private static int Failures(string message)
    {
        int open = message.IndexOf("failed (", StringComparison.Ordinal) + "failed (".Length;
        int end = message.IndexOf('x', open);
        return int.Parse(message.AsSpan(open, end - open), System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>
    /// A broker whose ACL leaves out the feedback topic refuses that subscription in its SUBACK and takes the others: the
    /// link comes up and warns about that topic, naming the reason, and about no other. Before, the SUBACK was thrown
    /// away and labels simply never arrived. mosquitto 2.0.11's acl_file grants every subscription (it filters at
    /// delivery); its dynamic security plugin, which has subscribe rules of their own, refuses with NotAuthorized.
    /// </summary>
    [Fact]
    public async Task A_subscription_the_broker_refuses_is_logged_with_its_topic_and_reason()
    {
        string dir = TestEnv.TempDir("dynsec");
        string rules = Path.Combine(dir, "dynamic-security.json");
        File.WriteAllText(rules, """
            {
              "defaultACLAccess": { "publishClientSend": true, "publishClientReceive": true, "subscribe": false, "unsubscribe": true },
              "clients": [],
              "groups": [ { "groupname": "anonymous", "roles": [ { "rolename": "device" } ], "clients": [] } ],
              "roles": [ { "rolename": "device", "acls": [
                { "acltype": "subscribeLiteral", "topic": "qana/devsuback/updates", "allow": true },
                { "acltype": "subscribeLiteral", "topic": "qana/devsuback/capture", "allow": true },
                { "acltype": "subscribeLiteral", "topic": "qana/fleet/updates", "allow": true } ] } ],
              "anonymousGroup": "anonymous"
            }
            """);
        using var broker = new MosquittoBroker(settings: $"plugin /usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so\nplugin_opt_config_file {rules}");
        var options = new MqttOptions { Host = "127.0.0.1", Port = broker.Port, ClientId = "qanad-devsuback", ReconnectMaxSeconds = 0.5 };
        var log = new RecordingLogger<MqttLink>();
        await using var link = new MqttLink(options, "devsuback", log);
        link.Start(() => Encoding.UTF8.GetBytes("""{"state":"online"}"""));
        LinkSession session = await link.WaitConnectedAsync(new CancellationTokenSource(TimeSpan.FromSeconds(30)).Token);

        string[] refused = [.. log.Lines.Where(l => l.Level == LogLevel.Warning && l.Message.Contains("refused the subscription", StringComparison.Ordinal)).Select(l => l.Message)];
        string warning = Assert.Single(refused);
        Assert.StartsWith($"MQTT session {session.Number}: broker refused the subscription to qana/devsuback/feedback: NotAuthorized", warning, StringComparison.Ordinal);
        try { Directory.Delete(dir, recursive: true); } catch (IOException) { }
    }
}
