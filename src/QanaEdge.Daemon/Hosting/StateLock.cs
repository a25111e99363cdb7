namespace QanaEdge.Daemon.Hosting;

/// <summary>
/// One qanad per state folder. Two daemons started on one state folder (the unit and a copy started by hand, or two
/// units with the same Qana:StateDir) both ran: LiteDB's direct mode takes no lock, so both wrote one store file,
/// claimed the same inbox captures and published each other's results. The first to start now holds
/// <see cref="FileName"/> in the state folder open with <see cref="FileShare.None"/>, which .NET on Linux takes as an
/// exclusive flock(2), released by the kernel when the process ends however it ends (kill -9 included); the second
/// refuses to start. Taken before anything in the folder is read or written (the learner key, applied updates, the
/// store).
/// </summary>
public sealed class StateLock : IDisposable
{
    /// <summary>The lock file's name in the state folder (it holds the owner's process id, for whoever looks).</summary>
    public const string FileName = "qanad.lock";

    // EWOULDBLOCK (EAGAIN on Linux), which .NET gives as the HResult of a FileShare conflict: flock found the file locked.
    private const int WouldBlock = 11;

    private readonly FileStream _file;

    private StateLock(FileStream file) => _file = file;

    /// <exception cref="IOException">Another process holds the state folder (the message says so).</exception>
    /// <exception cref="Configuration.ConfigurationException">
    /// The state folder cannot be made or written (a read-only mount, a folder of another user): the setting is wrong for
    /// this device, and the start says so naming it (exit 2), where it said only the system's error (exit 1).
    /// </exception>
    public static StateLock Acquire(string stateDir)
    {
        string path = Path.Combine(stateDir, FileName);
        FileStream file;
        try
        {
            Directory.CreateDirectory(stateDir);
            file = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, bufferSize: 1);
        }
        catch (IOException e) when (e.HResult == WouldBlock)
        {
            throw new IOException($"another qanad is running on the state folder {stateDir} (it holds {path}): one daemon per state folder", e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new Configuration.ConfigurationException([$"Qana:StateDir: {stateDir} cannot be written: {e.Message}"]);
        }
        try
        {
            file.SetLength(0);
            file.Write(System.Text.Encoding.ASCII.GetBytes($"{Environment.ProcessId}\n"));
            file.Flush();
        }
        catch (IOException)
        {
            // The lock is what matters; the process id is only a hint (a full disk may refuse it).
        }
        return new StateLock(file);
    }

    public void Dispose() => _file.Dispose();
}
