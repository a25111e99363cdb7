using System.Text;
using Microsoft.Extensions.Logging;
using QanaEdge.Daemon.Configuration;
using QanaEdge.Daemon.Messaging;
using QanaEdge.Daemon.Tests.Infrastructure;

namespace QanaEdge.Daemon.Tests;

/// <summary>The link's own behaviour while its broker is away, on a real loopback port where nothing listens.</summary>
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

    private static int Failures(string message)
    {
        int open = message.IndexOf("failed (", StringComparison.Ordinal) + "failed (".Length;
        int end = message.IndexOf('x', open);
        return int.Parse(message.AsSpan(open, end - open), System.Globalization.CultureInfo.InvariantCulture);
    }
}
