namespace QanaEdge.Model.Tests;

/// <summary>
/// The one writer of whole files (<see cref="WholeFile"/>) and what its options change: the CLI's per-process
/// temporary name, a key's owner-only mode and refusal to overwrite, the daemon's folder flush.
/// </summary>
public sealed class WholeFileTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("qana-whole").FullName;

    public void Dispose() => Directory.Delete(_dir, true);

    private string[] Leftovers() => Directory.GetFiles(_dir, "*.tmp*");

    [Fact]
    public void Replaces_the_file_whole_and_leaves_no_temporary_file()
    {
        string path = Path.Combine(_dir, "out.json");
        File.WriteAllText(path, "old");
        WholeFile.Write(path, "new"u8);
        Assert.Equal("new", File.ReadAllText(path));
        WholeFile.Write(path, "newer"u8, new WholeFileOptions { PerProcessTemporary = true });
        Assert.Equal("newer", File.ReadAllText(path));
        Assert.Empty(Leftovers());
    }

    [Fact]
    public void A_failure_names_the_target_not_the_temporary_file_and_removes_the_temporary_file()
    {
        string path = Path.Combine(_dir, "key.key");
        File.WriteAllText(path, "kept");
        var e = Assert.ThrowsAny<IOException>(() => WholeFile.Write(path, "other"u8, new WholeFileOptions { Overwrite = false }));
        Assert.Contains(path, e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(".tmp", e.Message, StringComparison.Ordinal);
        Assert.Equal("kept", File.ReadAllText(path));
        Assert.Empty(Leftovers());

        string inMissingFolder = Path.Combine(_dir, "no-such-folder", "out.json");
        e = Assert.ThrowsAny<IOException>(() => WholeFile.Write(inMissingFolder, "x"u8, new WholeFileOptions { PerProcessTemporary = true }));
        Assert.DoesNotContain(".tmp", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Owner_only_files_are_created_with_mode_0600_even_over_a_leftover_temporary_file()
    {
        if (OperatingSystem.IsWindows()) return;
        string path = Path.Combine(_dir, "dev.key");
        File.WriteAllText(path + ".tmp", "leftover of an interrupted attempt");
        File.SetUnixFileMode(path + ".tmp", (UnixFileMode)0b110_110_110);
        WholeFile.Write(path, "secret"u8, new WholeFileOptions { OwnerOnly = true, Overwrite = false });
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
        Assert.Equal("secret", File.ReadAllText(path));
    }

    [Fact]
    public void A_failed_folder_flush_comes_after_the_rename_and_says_so()
    {
        string path = Path.Combine(_dir, "active");
        string? flushed = null;
        WholeFile.Write(path, "one"u8, new WholeFileOptions { SyncFolder = folder => flushed = folder });
        Assert.Equal(Path.GetFullPath(_dir), flushed);

        var e = Assert.Throws<FolderSyncException>(() =>
            WholeFile.Write(path, "two"u8, new WholeFileOptions { SyncFolder = _ => throw new IOException("errno 5") }));
        Assert.Equal(path, e.FilePath);
        Assert.Equal("two", File.ReadAllText(path));   // in place: only its durability is in doubt
        Assert.Empty(Leftovers());
    }
}
