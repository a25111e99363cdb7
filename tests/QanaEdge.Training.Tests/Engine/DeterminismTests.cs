using QanaEdge.Training.Engine;
using QanaEdge.Training.Network;

namespace QanaEdge.Training.Tests.Engine;

/// <summary>A training step is bit-for-bit the same on 1 and 2 threads (fixed chunking, ordered reductions).</summary>
[Collection(ParThreads.Name)]
public class DeterminismTests
{
    private static float[] TwoSteps(int threads)
    {
        int saved = Par.Threads;
        Par.Threads = threads;
        try
        {
            var net = new QanaNet(new QanaOptions { InputSize = 16, StemChannels = 8, Blocks = [(16, 1), (16, 2)] }, 5);
            var x = new Tensor(6, 16, 16, 3) { RequiresGrad = false };
            var rng = new Rng(1);
            for (int i = 0; i < x.Length; i++) x.Data[i] = rng.NextFloat();
            var opt = new AdamW(net.Parameters);
            var loss = new SoftmaxCrossEntropy { LabelSmoothing = 0.1f };
            for (int step = 0; step < 2; step++)
            {
                var tape = new Tape { Training = true, Step = (ulong)step };
                loss.Forward(net.Forward(tape, x), [0, 1, 2, 3, 4, 5]);
                tape.Backward();
                opt.Step(1e-3f);
            }
            return net.Parameters.SelectMany(p => p.Value).ToArray();
        }
        finally { Par.Threads = saved; }
    }

    [Fact]
    public void SameResultOnOneAndTwoThreads() => Assert.Equal(TwoSteps(1), TwoSteps(2));
}
