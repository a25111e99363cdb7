using System.Diagnostics;
using System.Net.Sockets;

namespace QanaEdge.Daemon.Tests.Infrastructure;

/// <summary>
/// A real mosquitto (Debian package, /usr/sbin/mosquitto) on a free loopback port with a generated config. Persistence
/// is on so that a subscriber's persistent session and its queued QoS 1 messages survive <see cref="Stop"/>/
/// <see cref="Start"/>, like a real broker.
/// <para>
/// Started as root, mosquitto drops to the user named by <c>user</c> (default "mosquitto"), which cannot write the
/// root-owned scratch folder: it then saves no persistence file and no log, and every session is gone after a
/// restart. <c>user root</c> keeps it able to write there (the setting has no effect for a non-root user).
/// </para>
/// </summary>
public sealed class MosquittoBroker : IDisposable
{
    public const string Executable = "/usr/sbin/mosquitto";
    private readonly string _dir;
    private Process? _process;

    /// <param name="acl">Contents of an ACL file (mosquitto's acl_file; rules before any "user" line apply to anonymous
    /// clients), or null for none. <see cref="Acl"/> changes it for the next <see cref="Start"/>.</param>
    /// <param name="settings">More lines of mosquitto.conf (e.g. "max_packet_size 1000"), or null.</param>
    public MosquittoBroker(string? acl = null, string? settings = null)
    {
        _settings = settings;
        if (!File.Exists(Executable)) throw new InvalidOperationException($"{Executable} is missing: install the Debian package mosquitto (make deps)");
        _dir = TestEnv.TempDir("mosquitto");
        _acl = acl is not null;
        if (acl is not null) Acl = acl;
        // A port another process bound in the moment between its draw and mosquitto's bind (TestEnv.FreeTcpPort) makes
        // mosquitto exit at once: another port is drawn.
        for (int attempt = 1; ; attempt++)
        {
            Port = TestEnv.FreeTcpPort();
            WriteConfig();
            try
            {
                Start();
                return;
            }
            catch (InvalidOperationException) when (attempt < 3 && _process is { HasExited: true })
            {
                Stop();
            }
        }
    }

    private readonly bool _acl;
    private readonly string? _settings;

    private void WriteConfig() => File.WriteAllText(ConfigPath, $"""
        listener {Port} 127.0.0.1
        user root
        allow_anonymous true
        persistence true
        persistence_location {_dir}/
        autosave_interval 1
        max_queued_messages 100000
        max_inflight_messages 0
        set_tcp_nodelay true
        log_dest file {_dir}/mosquitto.log
        """ + (_acl ? $"\nacl_file {AclPath}\n" : "") + (_settings is null ? "" : "\n" + _settings + "\n"));

    public int Port { get; private set; }
    public string AclPath => Path.Combine(_dir, "acl");

    /// <summary>The ACL file's contents (read by mosquitto when it starts).</summary>
    public string Acl { get => File.ReadAllText(AclPath); set => File.WriteAllText(AclPath, value); }
    public string ConfigPath => Path.Combine(_dir, "mosquitto.conf");
    public string Log => File.Exists(Path.Combine(_dir, "mosquitto.log")) ? File.ReadAllText(Path.Combine(_dir, "mosquitto.log")) : "";
    public bool IsRunning => _process is { HasExited: false };
    /// <summary>The broker's process id (its idle cost is measured beside the daemon's in the daemon bench).</summary>
    public int ProcessId => _process?.Id ?? throw new InvalidOperationException("the broker is not running");

    /// <summary>The persistence file mosquitto writes on a clean stop (sessions, subscriptions, queued messages).</summary>
    public string PersistenceFile => Path.Combine(_dir, "mosquitto.db");

    /// <summary>SIGSTOP: the process freezes with its sockets open (the kernel still completes TCP handshakes), as a hung broker or a half-open link looks to a client.</summary>
    public void Freeze() => Signal("STOP");

    /// <summary>SIGCONT after <see cref="Freeze"/>.</summary>
    public void Thaw() => Signal("CONT");

    private void Signal(string signal)
    {
        if (_process is null || _process.HasExited) throw new InvalidOperationException("mosquitto is not running");
        Process.Start("kill", [$"-{signal}", _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])!.WaitForExit();
    }

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
            try
            {
                using var c = new TcpClient();
                c.Connect("127.0.0.1", Port);
                // What answered is this mosquitto only while it runs (one that could not bind exits).
                if (_process.HasExited) throw new InvalidOperationException($"mosquitto exited; another process listens on port {Port}: {Log}");
                return;
            }
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
            // A frozen broker would not act on SIGTERM.
            Process.Start("kill", ["-CONT", _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])!.WaitForExit();
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
