using QanaEdge.Model.Packaging;
using QanaEdge.TestSupport;

namespace QanaEdge.Model.Tests;

/// <summary>The shared random graphs (every operator, odd shapes, all gate shapes) through the package format.</summary>
public class TestGraphsTests
{
    [Fact]
    public void RandomGraphs_RoundTrip()
    {
        for (int seed = 0; seed < 40; seed++)
        {
            ModelPackage original = TestGraphs.RandomGraph(seed);
            byte[] bytes = PackageWriter.ToBytes(original);
            ModelPackage loaded = PackageReader.Load(bytes);
            RoundTripTests.AssertSame(original, loaded);
            Assert.Equal(bytes, PackageWriter.ToBytes(loaded));
        }
    }

    [Fact]
    public void QanaShaped_RoundTrips()
    {
        ModelPackage original = TestGraphs.QanaShaped(1);
        ModelPackage loaded = PackageReader.Load(PackageWriter.ToBytes(original));
        RoundTripTests.AssertSame(original, loaded);
    }

    [Fact]
    public void RandomGraphs_SurviveTruncationAndBitFlips()
    {
        var rng = new Random(77);
        for (int seed = 0; seed < 10; seed++)
        {
            byte[] bytes = PackageWriter.ToBytes(TestGraphs.RandomGraph(seed));
            for (int i = 0; i < 50; i++)
            {
                byte[] m = rng.Next(2) == 0 ? bytes.AsSpan(0, rng.Next(bytes.Length)).ToArray() : (byte[])bytes.Clone();
                if (m.Length == bytes.Length)
                {
                    m[rng.Next(m.Length)] ^= (byte)(1 << rng.Next(8));
                    if (rng.Next(2) == 0) PackageBytes.FixChecksum(m);
                }
                try { PackageReader.Load(m); }
                catch (PackageFormatException) { }
            }
        }
    }
}
