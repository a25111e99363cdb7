using QanaEdge.Model.Packaging;
using QanaEdge.Runtime;

namespace QanaEdge.Daemon.Classification;

/// <summary>
/// The package's golden vectors (int8 inputs with the logits its maker computed) run on the engine that will serve it.
/// Integer inference is exact, so every logit must match: a mismatch means the package and this device's engine
/// disagree (a wrong head, a damaged build, a card programmed wrongly), and the package must not go into service.
/// </summary>
public static class GoldenSelfTest
{
    /// <summary>Null when every golden vector reproduces its logits; otherwise the first mismatch, in one line.</summary>
    public static string? Check(ModelPackage package, IInferenceEngine engine)
    {
        GoldenVector[] golden = package.Manifest.Golden;
        for (int i = 0; i < golden.Length; i++)
        {
            engine.Run(golden[i].Input);
            ReadOnlySpan<sbyte> got = engine.Logits;
            sbyte[] expected = golden[i].ExpectedLogits;
            if (got.Length != expected.Length)
                return $"golden self-test failed: vector {i} gave {got.Length} logits, {expected.Length} expected";
            for (int k = 0; k < expected.Length; k++)
                if (got[k] != expected[k])
                    return $"golden self-test failed: vector {i} of {golden.Length}, logit {k}: expected {expected[k]}, the engine gave {got[k]}";
        }
        return null;
    }
}
