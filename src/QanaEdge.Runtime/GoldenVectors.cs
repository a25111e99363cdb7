using QanaEdge.Model.Packaging;

namespace QanaEdge.Runtime;

/// <summary>
/// A package's golden self-test vectors: int8 inputs with the logits its maker computed. Integer inference is exact,
/// so the engine that will serve a package must reproduce every logit; a mismatch means the package and the engine
/// disagree (a wrong head, a damaged build, a card programmed wrongly), and the package must not go into service.
/// </summary>
public static class GoldenVectors
{
    /// <summary>Golden vectors for <paramref name="package"/>: each input with the logits the reference kernels give it.</summary>
    public static GoldenVector[] Record(ModelPackage package, IEnumerable<sbyte[]> inputs)
    {
        using var engine = IntegerEngine.Create(package, KernelMode.Reference);
        return inputs.Select(input =>
        {
            engine.Run(input);
            return new GoldenVector { Input = input, ExpectedLogits = engine.Logits.ToArray() };
        }).ToArray();
    }

    /// <summary>
    /// <paramref name="count"/> int8 inputs of <paramref name="package"/>'s input shape, drawn from a fixed seed over the
    /// whole int8 range: for checking an engine against the reference when the package carries no golden vectors of
    /// its own (a model patched by a readout update has none).
    /// </summary>
    public static IEnumerable<sbyte[]> SeededInputs(ModelPackage package, int count, int seed = 20260)
    {
        int length = package.Graph.Tensors[package.Graph.InputTensor].Length;
        var random = new Random(seed);
        for (int i = 0; i < count; i++)
        {
            var input = new sbyte[length];
            random.NextBytes(System.Runtime.InteropServices.MemoryMarshal.AsBytes(input.AsSpan()));
            yield return input;
        }
    }

    /// <summary>Null when <paramref name="engine"/> reproduces every golden vector of <paramref name="package"/>; otherwise the first mismatch, in one line.</summary>
    public static string? Check(ModelPackage package, IInferenceEngine engine) => Check(package.Manifest.Golden, engine);

    /// <summary>Null when <paramref name="engine"/> reproduces every one of <paramref name="golden"/>; otherwise the first mismatch, in one line.</summary>
    public static string? Check(GoldenVector[] golden, IInferenceEngine engine)
    {
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
