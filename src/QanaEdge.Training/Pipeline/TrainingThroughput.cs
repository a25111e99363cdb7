using System.Diagnostics;
using QanaEdge.Training.Engine;
using QanaEdge.Training.Network;

namespace QanaEdge.Training.Pipeline;

/// <summary>
/// Training-step throughput of the float QANA (forward, loss, backward, AdamW) on a synthetic batch:
/// the figure docs/benchmarks.md compares with PyTorch on the same architecture and batch.
/// </summary>
public static class TrainingThroughput
{
    /// <param name="Parameters">Trainable parameters of the network measured: says which network it was.</param>
    public sealed record Result(int Batch, int Threads, int Steps, double Seconds, double ImagesPerSecond, double CpuSeconds, long Parameters);

    public static Result Measure(QanaOptions options, int batch, int steps, int warmup = 2)
    {
        var net = new QanaNet(options, 1);
        var x = new Tensor(batch, options.InputSize, options.InputSize, 3) { RequiresGrad = false };
        var rng = new Rng(7);
        for (int i = 0; i < x.Length; i++) x.Data[i] = rng.NextFloat();
        var labels = Enumerable.Range(0, batch).Select(i => i % options.NumClasses).ToArray();
        var opt = new AdamW(net.Parameters);
        var loss = new SoftmaxCrossEntropy { LabelSmoothing = 0.1f };
        var tape = new Tape { Training = true };
        void Step(int s)
        {
            tape.Step = (ulong)s;
            loss.Forward(net.Forward(tape, x), labels);
            tape.Backward();
            opt.Step(1e-3f);
        }
        for (int s = 0; s < warmup; s++) Step(s);
        var cpu0 = Process.GetCurrentProcess().TotalProcessorTime;
        var sw = Stopwatch.StartNew();
        for (int s = 0; s < steps; s++) Step(warmup + s);
        double seconds = sw.Elapsed.TotalSeconds;
        double cpu = (Process.GetCurrentProcess().TotalProcessorTime - cpu0).TotalSeconds;
        return new Result(batch, Par.Threads, steps, seconds, batch * steps / seconds, cpu, net.Parameters.Sum(p => (long)p.Value.Length));
    }
}
