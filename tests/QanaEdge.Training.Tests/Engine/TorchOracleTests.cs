using System.Text.Json;
using QanaEdge.Training.Engine;
using QanaEdge.Training.Network;

namespace QanaEdge.Training.Tests.Engine;

/// <summary>
/// A small QANA with fixed weights against PyTorch (float64): logits, loss and every gradient agree to
/// 1e-4 relative (per tensor, max |ours − torch| / max |torch|). The fixture is written by
/// tests/oracles/qana_torch_oracle.py and committed, so no torch is needed here.
/// </summary>
[Collection(ParThreads.Name)]
public class TorchOracleTests
{
    private sealed record Fixture(int Batch, int InputSize, int Stem, int[][] Blocks, float[] InputNhwc, int[] Labels,
        float[] ClassWeights, Dictionary<string, float[]> Params, float[] Logits, double Loss,
        Dictionary<string, float[]> Grads, float[] InputGradNhwc);

    private static Fixture Load()
    {
        string path = Path.Combine(AppContext.BaseDirectory, "Fixtures", "qana_small_torch.json");
        var options = new JsonSerializerOptions { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };
        return JsonSerializer.Deserialize<Fixture>(File.ReadAllText(path), options)!;
    }

    private static void AssertClose(string what, ReadOnlySpan<float> ours, float[] torch, double rel = 1e-4)
    {
        Assert.Equal(torch.Length, ours.Length);
        double maxRef = 0, maxDiff = 0;
        for (int i = 0; i < torch.Length; i++)
        {
            maxRef = Math.Max(maxRef, Math.Abs(torch[i]));
            maxDiff = Math.Max(maxDiff, Math.Abs(ours[i] - torch[i]));
        }
        Assert.True(maxRef > 0, $"{what}: reference is all zeros");
        Assert.True(maxDiff <= rel * maxRef, $"{what}: max |diff| {maxDiff:G4} > {rel} x {maxRef:G4}");
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void SmallQanaMatchesPyTorch(int threads)
    {
        var f = Load();
        int saved = Par.Threads;
        Par.Threads = threads;
        try
        {
            var options = new QanaOptions
            {
                InputSize = f.InputSize, StemChannels = f.Stem, Blocks = f.Blocks.Select(b => (b[0], b[1])).ToArray(), DropoutRate = 0,
            };
            var net = new QanaNet(options, 1);
            var parameters = net.Parameters.ToList();
            Assert.Equal(f.Params.Count, parameters.Count);
            foreach (var p in parameters)
            {
                Assert.True(f.Params.TryGetValue(p.Name, out var v), $"fixture lacks {p.Name}");
                Assert.Equal(p.Length, v!.Length);
                v.CopyTo(p.Value, 0);
            }
            var x = new Tensor(f.Batch, f.InputSize, f.InputSize, 3);
            f.InputNhwc.CopyTo(x.Data, 0);
            x.ZeroGrad();
            var tape = new Tape { Training = true };
            var logits = net.Forward(tape, x);
            var loss = new SoftmaxCrossEntropy { ClassWeights = f.ClassWeights };
            float l = loss.Forward(logits, f.Labels);
            tape.Backward();

            AssertClose("logits", logits.Data.AsSpan(0, logits.Length), f.Logits);
            Assert.True(Math.Abs(l - f.Loss) <= 1e-4 * Math.Abs(f.Loss), $"loss {l} vs {f.Loss}");
            foreach (var p in parameters) AssertClose(p.Name + " grad", p.Grad, f.Grads[p.Name]);
            AssertClose("input grad", x.Grad.AsSpan(0, x.Length), f.InputGradNhwc);
        }
        finally { Par.Threads = saved; }
    }
}
