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

    public static int FreeTcpPort()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
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
