using QanaEdge.Training.Network;
using QanaEdge.Training.Pipeline;

namespace QanaEdge.Training.Tests.Pipeline;

/// <summary>Float checkpoints (<c>--resume-float</c>): a file that is not one, is cut short, or was written for another
/// architecture is refused with a message naming the file, before any image is loaded.</summary>
public sealed class NetStateTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("qana-ckpt-").FullName;
    private static readonly QanaOptions Small = new() { InputSize = 16, StemChannels = 8, Blocks = [(16, 1), (16, 2)] };

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Saved(QanaOptions options, ulong seed, string name)
    {
        string path = Path.Combine(_dir, name);
        NetState.Capture(new QanaNet(options, seed)).Save(path);
        return path;
    }

    [Fact]
    public void AFittingCheckpointRestoresTheNetwork()
    {
        string path = Saved(Small, 3, "fits.ckpt");
        var net = new QanaNet(Small, 9);
        NetState.LoadFor(path, new QanaNet(Small, 1)).Restore(net);
        Assert.Equal(new QanaNet(Small, 3).Parameters.SelectMany(p => p.Value), net.Parameters.SelectMany(p => p.Value));
    }

    [Theory]
    [InlineData(true, "trained with --pooled-head")]
    [InlineData(false, "trained without --pooled-head")]
    public void AHeadOfTheOtherKindIsNamed(bool checkpointPooled, string hint)
    {
        string path = Saved(Small with { PooledHead = checkpointPooled }, 1, "head.ckpt");
        var e = Assert.Throws<InvalidDataException>(() => NetState.LoadFor(path, new QanaNet(Small with { PooledHead = !checkpointPooled }, 1)));
        Assert.Contains(path, e.Message);
        Assert.Contains("'head.w'", e.Message);
        Assert.Contains(hint, e.Message);
    }

    [Fact]
    public void AnotherArchitectureIsRefused()
    {
        string path = Saved(Small with { Se = false }, 1, "nose.ckpt");
        var e = Assert.Throws<InvalidDataException>(() => NetState.LoadFor(path, new QanaNet(Small, 1)));
        Assert.Contains(path, e.Message);
        Assert.Contains("does not fit", e.Message);
    }

    [Fact]
    public void ATruncatedOrForeignFileNamesTheFile()
    {
        string path = Saved(Small, 1, "cut.ckpt");
        byte[] bytes = File.ReadAllBytes(path);
        foreach (int keep in new[] { bytes.Length / 2, 10, 6 })
        {
            File.WriteAllBytes(path, bytes[..keep]);
            var e = Assert.Throws<InvalidDataException>(() => NetState.LoadFor(path, new QanaNet(Small, 1)));
            Assert.Contains(path, e.Message);
        }
        File.WriteAllBytes(path, [.. bytes, 0, 0, 0, 0]);
        Assert.Contains("bytes follow", Assert.Throws<InvalidDataException>(() => NetState.Load(path)).Message);
        File.WriteAllText(path, "not a checkpoint at all");
        Assert.Contains("not a QanaEdge float checkpoint", Assert.Throws<InvalidDataException>(() => NetState.Load(path)).Message);
    }
}
