using QanaEdge.Runtime;

namespace QanaEdge.TestSupport;

/// <summary>Checks every <see cref="IInferenceEngine"/> must pass, whichever hardware runs it.</summary>
public static class EngineChecks
{
    /// <summary>
    /// Managed bytes allocated by <paramref name="runs"/> inferences (run, probabilities, logits, spike counts) after
    /// one warm-up inference, on this thread: the hot path's promise is 0.
    /// </summary>
    public static long AllocatedBytesAfterWarmUp(IInferenceEngine engine, sbyte[] input, int runs)
    {
        var graph = engine.Package.Graph;
        var probabilities = new float[graph.Tensors[graph.LogitsTensor].Length];
        engine.Run(input);
        engine.GetProbabilities(probabilities);
        return Allocations.OnThisThread(() =>
        {
            for (int i = 0; i < runs; i++)
            {
                engine.Run(input);
                engine.GetProbabilities(probabilities);
                _ = engine.SpikeCounts;
                _ = engine.Logits;
            }
        });
    }
}
