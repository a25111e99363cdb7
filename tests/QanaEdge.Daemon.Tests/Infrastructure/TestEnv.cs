using System.Net;
using System.Net.Sockets;

namespace QanaEdge.Daemon.Tests.Infrastructure;

/// <summary>Paths, real images and scratch folders for the daemon tests.</summary>
public static class TestEnv
{
    public static string RepositoryRoot
    {
        get
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
                if (File.Exists(Path.Combine(dir.FullName, "QanaEdge.sln"))) return dir.FullName;
            throw new DirectoryNotFoundException($"no QanaEdge.sln above {AppContext.BaseDirectory}");
        }
    }

    /// <summary>&lt;repo&gt;/../shared/data/ham10000/images.</summary>
    public static string ImagesDir => Path.GetFullPath(Path.Combine(RepositoryRoot, "..", "shared", "data", "ham10000", "images"));

    /// <summary>The first <paramref name="count"/> real HAM10000 JPEGs in name order (deterministic).</summary>
    public static string[] RealImages(int count, int skip = 0)
    {
        string[] all = Directory.GetFiles(ImagesDir, "ISIC_*.jpg").Order(StringComparer.Ordinal).ToArray();
        if (all.Length < skip + count) throw new InvalidOperationException($"{ImagesDir} holds {all.Length} images, the test needs {skip + count}");
        return all.Skip(skip).Take(count).ToArray();
    }

    public static string TempDir(string name)
    {
        string dir = Path.Combine(Path.GetTempPath(), "qanad-tests", $"{name}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        return dir;
    }

    /// <summary>
    /// A loopback port nothing listens on, for a broker (or a test that wants none). The port is released before whoever
    /// asked binds it. A port from bind(0) was an ephemeral one, which any client socket of the run (it makes thousands)
    /// could take in that moment, and the broker then did not start; so the port is drawn below the kernel's ephemeral
    /// range, where only an explicit bind takes one. Each is handed out once per test process, so that a broker stopped
    /// and started again does not find its port given to another test's broker meanwhile.
    /// </summary>
    public static int FreeTcpPort()
    {
        (int low, int high) = (10_000, EphemeralStart);
        for (int attempt = 0; high - low >= 1000 && attempt < 100; attempt++)
        {
            int port = Random.Shared.Next(low, high);
            lock (s_handedOut) if (!s_handedOut.Add(port)) continue;
            try
            {
                var probe = new TcpListener(IPAddress.Loopback, port);
                probe.Start();
                probe.Stop();
                return port;
            }
            catch (SocketException) { /* in use: draw again */ }
        }
        // A machine whose ephemeral range starts too low to leave room below it: the kernel's choice, as before.
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int any = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return any;
    }

    private static readonly HashSet<int> s_handedOut = [];

    /// <summary>The first port of the kernel's ephemeral range (ip_local_port_range; 32768 by default).</summary>
    private static int EphemeralStart
    {
        get
        {
            try { return int.Parse(File.ReadAllText("/proc/sys/net/ipv4/ip_local_port_range").Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries)[0]); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException) { return 32768; }
        }
    }

    /// <summary>Writes under a temporary name, then renames into place: the way a capture app should deliver.</summary>
    public static void Drop(string source, string inbox, string? name = null)
    {
        name ??= Path.GetFileName(source);
        string tmp = Path.Combine(inbox, "." + name + ".tmp");
        File.Copy(source, tmp, overwrite: true);
        File.Move(tmp, Path.Combine(inbox, name));
    }

    public static void DropBytes(byte[] bytes, string inbox, string name)
    {
        string tmp = Path.Combine(inbox, "." + name + ".tmp");
        File.WriteAllBytes(tmp, bytes);
        File.Move(tmp, Path.Combine(inbox, name));
    }

    /// <summary>Polls until <paramref name="condition"/> holds; on timeout the message says what was awaited and, from <paramref name="state"/>, where things stood.</summary>
    public static async Task WaitUntil(Func<bool> condition, TimeSpan timeout, string what, Func<string>? state = null)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!condition())
        {
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException($"timed out after {timeout.TotalSeconds} s waiting for {what}" + (state is null ? "" : $" ({state()})"));
            await Task.Delay(50);
        }
    }
}
