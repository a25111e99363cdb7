using System.Diagnostics;

namespace QanaEdge.Daemon.Tests.Infrastructure;

/// <summary>
/// A real, small file system (tmpfs of a few MB) mounted on a scratch folder, so that a test can fill the disk for
/// real and the daemon meets ENOSPC from the kernel, not from a fake. Mounting needs root or password-less sudo,
/// which <c>make test</c> needs anyway for its apt packages; where neither is available the tests that need it are
/// skipped with that reason (<see cref="SmallFileSystemFactAttribute"/>).
/// </summary>
public sealed class SmallFileSystem : IDisposable
{
    private static readonly Lazy<string?> Unavailable = new(Probe);

    public SmallFileSystem(int megabytes)
    {
        Root = TestEnv.TempDir("tmpfs");
        string? error = Mount(Root, megabytes);
        if (error is not null) throw new InvalidOperationException($"cannot mount a {megabytes} MB tmpfs on {Root}: {error}");
    }

    public string Root { get; }

    /// <summary>Why no tmpfs can be mounted here, or null when it can.</summary>
    public static string? WhyUnavailable => Unavailable.Value;

    /// <summary>Writes a file that takes every free byte (the kernel's ENOSPC ends it); returns its path.</summary>
    public string Fill()
    {
        string path = Path.Combine(Root, "filler");
        var block = new byte[64 * 1024];
        using var stream = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, bufferSize: 1);
        try
        {
            while (true) stream.Write(block);
        }
        catch (IOException) { }
        // Single bytes too, so not even a partial block is left.
        try { while (true) stream.WriteByte(0); } catch (IOException) { }
        return path;
    }

    /// <summary>Runs mount(8), umount(8) or another privileged command as <see cref="SmallFileSystem"/> does; throws when it fails.</summary>
    public static void Privileged(string command, params string[] args)
    {
        var (code, output) = Run(command, args);
        if (code != 0) throw new InvalidOperationException($"{command} {string.Join(' ', args)} failed: {output.Trim()}");
    }

    public void Dispose()
    {
        Run("umount", "-l", Root);
        try { Directory.Delete(Root, recursive: true); } catch (IOException) { }
    }

    private static string? Probe()
    {
        string dir = TestEnv.TempDir("tmpfs-probe");
        try
        {
            string? error = Mount(dir, 1);
            if (error is null) Run("umount", dir);
            return error;
        }
        finally { try { Directory.Delete(dir); } catch (IOException) { } }
    }

    private static string? Mount(string dir, int megabytes)
    {
        var (code, output) = Run("mount", "-t", "tmpfs", "-o", $"size={megabytes}m", "tmpfs", dir);
        return code == 0 ? null : output.Trim();
    }

    /// <summary>Runs a privileged command directly as root, else through <c>sudo -n</c> (never prompts).</summary>
    private static (int Code, string Output) Run(string command, params string[] args)
    {
        bool root = Environment.UserName == "root";
        var psi = new ProcessStartInfo(root ? command : "sudo") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        if (!root) { psi.ArgumentList.Add("-n"); psi.ArgumentList.Add(command); }
        foreach (string a in args) psi.ArgumentList.Add(a);
        try
        {
            using var p = Process.Start(psi)!;
            string output = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
            p.WaitForExit();
            return (p.ExitCode, output);
        }
        catch (System.ComponentModel.Win32Exception e) { return (-1, e.Message); }
    }
}

/// <summary>A fact that needs <see cref="SmallFileSystem"/>: skipped, with the reason, where no tmpfs can be mounted.</summary>
public sealed class SmallFileSystemFactAttribute : FactAttribute
{
    public SmallFileSystemFactAttribute()
    {
        if (SmallFileSystem.WhyUnavailable is { } why) Skip = $"needs a tmpfs mount (root or sudo -n): {why}";
    }
}
