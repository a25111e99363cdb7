using QanaEdge.Model.Packaging;

namespace QanaEdge.Runtime;

/// <summary>
/// Runs one model on one quantized image at a time. Not thread-safe: one engine per thread.
/// After the first <see cref="Run"/> (warm-up) a run allocates nothing on the managed heap.
/// </summary>
public interface IInferenceEngine : IDisposable
{
    /// <summary>Short engine name for status messages and benchmarks (e.g. "integer-optimized").</summary>
    string Name { get; }
    ModelPackage Package { get; }

    /// <summary>Runs the graph on a quantized HWC int8 input (see <see cref="InputQuantizer"/>).</summary>
    void Run(ReadOnlySpan<sbyte> input);

    /// <summary>The int8 class logits of the last run.</summary>
    ReadOnlySpan<sbyte> Logits { get; }
    /// <summary>Spike counts of the readout over its window T; empty when the graph has no readout.</summary>
    ReadOnlySpan<int> SpikeCounts { get; }
    /// <summary>Events of the last run: activations different from their zero point, summed over every layer's inputs.</summary>
    long Events { get; }

    /// <summary>p_k = softmax(β·Σ_t w_t·s_k,t) from the readout (softmax of the real logits when there is none).</summary>
    void GetProbabilities(Span<float> probabilities);
}

/// <summary>Which kernels an <see cref="IntegerEngine"/> runs.</summary>
public enum KernelMode
{
    /// <summary>Vectorised kernels, bit-exact to <see cref="Reference"/>; event-driven where skipping zeros pays.</summary>
    Optimized = 0,
    /// <summary>Plain loop nests: the oracle.</summary>
    Reference = 1,
    /// <summary>Analysis: the whole network as integrate-and-fire neurons over T time steps (see <see cref="TimeSteppedSimulator"/>).</summary>
    TimeStepped = 2,
}
