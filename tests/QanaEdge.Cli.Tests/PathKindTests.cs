using QanaEdge.Model.Packaging;
using QanaEdge.Model.Tests;

namespace QanaEdge.Cli.Tests;

/// <summary>
/// A folder given where a file is expected (or a file where a folder is) is reported as such, not as "not found",
/// which sent the reader looking for a typo: every verb asks the one place that tells them apart (ExpectedPath).
/// </summary>
public sealed class PathKindTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("qana-paths").FullName;

    public void Dispose() => Directory.Delete(_dir, true);

    private string Folder(string name) => Directory.CreateDirectory(Path.Combine(_dir, name)).FullName;

    private string Package()
    {
        string path = Path.Combine(_dir, "m.qana");
        File.WriteAllBytes(path, PackageWriter.ToBytes(SmallPackages.Build(1)));
        return path;
    }

    [Fact]
    public void A_folder_given_for_a_file_is_reported_as_a_folder()
    {
        string folder = Folder("a-folder.qana"), package = Package();
        const string expected = "is a directory, expected a file";

        Qana.Run("inspect", folder).AssertOneLineError(1, $"'{folder}' {expected}");
        Qana.Run("verify", "--trust", _dir, folder).AssertOneLineError(1, expected);
        Qana.Run("classify", "--model", folder, ClassifyCommandTests.Jpegs(1)[0]).AssertOneLineError(1, $"model package '{folder}' {expected}");
        Qana.Run("bench", "--model", folder, "--runs", "10", "--no-peer").AssertOneLineError(1, expected);

        CliResult classify = Qana.Run("classify", "--model", package, folder);
        Assert.Equal(1, classify.Code);
        Assert.Contains($"{folder}: {expected}", classify.Err, StringComparison.Ordinal);

        Qana.Run("evaluate", "--images", _dir, "--labels", folder, "--model", package).AssertOneLineError(1, $"label file {expected}");
        Qana.Run("sign", "--key", folder, "--out", Path.Combine(_dir, "signed.qana"), package).AssertOneLineError(1, $"key file '{folder}' {expected}");
    }

    [Fact]
    public void A_file_given_for_a_folder_is_reported_as_a_file()
    {
        string package = Package(), labels = Path.Combine(_dir, "labels.csv");
        File.WriteAllText(labels, "image_id,dx\nx,nv\n");
        const string expected = "is a file, expected a directory";

        Qana.Run("evaluate", "--images", labels, "--labels", labels, "--model", package).AssertOneLineError(1, $"images folder {expected}");
        Qana.Run("verify", "--trust", labels, package).AssertOneLineError(1, $"trust directory '{labels}' {expected}");
        Qana.Run("split", "--images", labels, "--labels", labels, "--out", _dir).AssertOneLineError(1, expected);
    }
}
