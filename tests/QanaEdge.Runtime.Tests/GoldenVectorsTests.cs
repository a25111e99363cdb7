using QanaEdge.Model.Packaging;
using QanaEdge.Runtime;
using QanaEdge.TestSupport;

namespace QanaEdge.Runtime.Tests;

public class GoldenVectorsTests
{
    [Fact]
    public void Recorded_vectors_reproduce_on_the_optimized_engine_and_a_changed_logit_is_named()
    {
        // A readout update of a small QANA-shaped model carries golden vectors of its own graph (head input → head).
        ModelPackage model = TestGraphs.QanaShaped(seed: 4, inputSize: 16);
        var head = ReadoutUpdates.Head(model);
        ModelPackage plain = ReadoutUpdates.Create(model, "1.0.1", head.Weights!, head.WeightScales!, head.Bias!);
        GoldenVector[] golden = GoldenVectors.Record(plain, Enumerable.Range(1, 3).Select(seed => TestGraphs.RandomInput(plain, seed)));
        Assert.Equal(3, golden.Length);
        Assert.Equal(TestGraphs.RandomInput(plain, 2), golden[1].Input);

        ModelPackage package = ReadoutUpdates.Create(model, "1.0.1", head.Weights!, head.WeightScales!, head.Bias!, golden: golden);
        using var engine = IntegerEngine.Create(package, KernelMode.Optimized);
        Assert.Null(GoldenVectors.Check(package, engine));

        golden[2].ExpectedLogits[5] ^= 1;
        Assert.Equal($"golden self-test failed: vector 2 of 3, logit 5: expected {golden[2].ExpectedLogits[5]}, the engine gave {golden[2].ExpectedLogits[5] ^ 1}",
            GoldenVectors.Check(package, engine));
    }
}
