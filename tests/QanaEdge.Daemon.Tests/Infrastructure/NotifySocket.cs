using System.Diagnostics;
using System.Net.Sockets;
using System.Text;

namespace QanaEdge.Daemon.Tests.Infrastructure;

/// <summary>
/// A datagram socket standing in for systemd's NOTIFY_SOCKET: records every sd_notify line (READY=1, WATCHDOG=1,
/// STATUS=...) with the time it arrived.
/// </summary>
public sealed class NotifySocket : IDisposable
{
    private readonly Socket _socket = new(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
    private readonly List<(TimeSpan At, string Line)> _lines = [];
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly Task _reader;

    public NotifySocket(string path)
    {
        Path_ = path;
        _socket.Bind(new UnixDomainSocketEndPoint(path));
        _reader = Task.Run(() =>
        {
            var buffer = new byte[4096];
            while (true)
            {
                int n;
                try { n = _socket.Receive(buffer); } catch (Exception e) when (e is SocketException or ObjectDisposedException) { return; }
                TimeSpan at = _clock.Elapsed;
                lock (_lines)
                    foreach (string line in Encoding.UTF8.GetString(buffer, 0, n).Split('\n', StringSplitOptions.RemoveEmptyEntries))
                        _lines.Add((at, line));
            }
        });
    }

    public string Path_ { get; }

    /// <summary>Time since the socket was opened, on the clock <see cref="Lines"/> uses.</summary>
    public TimeSpan Now => _clock.Elapsed;

    public (TimeSpan At, string Line)[] Lines { get { lock (_lines) return [.. _lines]; } }

    public void Dispose()
    {
        _socket.Dispose();
        try { _reader.Wait(TimeSpan.FromSeconds(5)); } catch (AggregateException) { }
    }
}
