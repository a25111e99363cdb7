using System.Diagnostics;
using System.Net.Sockets;

namespace QanaEdge.Daemon.Tests.Infrastructure;

/// <summary>
/// A real mosquitto (Debian package, /usr/sbin/mosquitto) on a free loopback port with a generated config. Persistence
/// is on so that a subscriber's queued QoS 1 messages survive <see cref="Stop"/>/<see cref="Start"/>, like a real broker.
/// </summary>
public sealed class MosquittoBroker : IDisposable
{
    public const string Executable = "/usr/sbin/mosquitto";
    private readonly string _dir;
    private Process? _process;

    public MosquittoBroker()
    {
        if (!File.Exists(Executable)) throw new InvalidOperationException($"{Executable} is missing: install the Debian package mosquitto (make deps)");
        _dir = TestEnv.TempDir("mosquitto");
        Port = TestEnv.FreeTcpPort();
        File.WriteAllText(ConfigPath, $"""
            listener {Port} 127.0.0.1
            allow_anonymous true
            persistence true
            persistence_location {_dir}/
            autosave_interval 1
            max_queued_messages 100000
            max_inflight_messages 0
            log_dest file {_dir}/mosquitto.log
            """.Replace("            ", ""));
        Start();
    }

    public int Port { get; }
    public string ConfigPath => Path.Combine(_dir, "mosquitto.conf");
    public string Log => File.Exists(Path.Combine(_dir, "mosquitto.log")) ? File.ReadAllText(Path.Combine(_dir, "mosquitto.log")) : "";
    public bool IsRunning => _process is { HasExited: false };

    public void Start()
    {
        if (IsRunning) return;
        var psi = new ProcessStartInfo(Executable, ["-c", ConfigPath]) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        _process = Process.Start(psi)!;
        _process.OutputDataReceived += (_, _) => { };
        _process.ErrorDataReceived += (_, _) => { };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (true)
        {
            try { using var c = new TcpClient(); c.Connect("127.0.0.1", Port); return; }
            catch (SocketException) when (DateTime.UtcNow < deadline && !_process.HasExited) { Thread.Sleep(20); }
            catch (SocketException) { throw new InvalidOperationException($"mosquitto did not start on port {Port}: {Log}"); }
        }
    }

    /// <summary>SIGTERM (mosquitto saves its persistence file) and wait.</summary>
    public void Stop()
    {
        if (_process is null) return;
        if (!_process.HasExited)
        {
            Process.Start("kill", ["-TERM", _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])!.WaitForExit();
            if (!_process.WaitForExit(10_000)) _process.Kill();
        }
        _process.Dispose();
        _process = null;
    }

    public void Dispose()
    {
        Stop();
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }
}
