using QanaEdge.Model.Graph;

namespace QanaEdge.Model.Packaging;

/// <summary>
/// Lists where a package breaks the constraints of the <c>akd1000</c> profile (what the AKD1000 chip
/// runs). The rules, as docs/model-format.md states them:
/// <list type="number">
/// <item>The first layer (every node that reads the graph's input) may use 8-bit weights; every other
/// weighted node's weights lie in [−8, 7] (4-bit).</item>
/// <item>Every weight scale is a power of two.</item>
/// <item>Every activation after the first layer is symmetric 4-bit: zero point 0 and at most 16 levels
/// (the producing node's clamp range, for a sigmoid the range of its table within it; a node that only
/// copies its inputs — a reshape, or a clamp or concat that keeps their quantization — cannot create
/// levels, so its range is that of its inputs within its clamp). Not checked: the logits (the chip's
/// last layer emits potentials) and the readout's spike counts.</item>
/// <item>Every activation scale after the input is a power of two.</item>
/// </list>
/// An empty list means the package fits. The graph must be valid (it is, once loaded).
/// </summary>
public static class ProfileChecker
{
    public static IReadOnlyList<string> Check(ModelPackage package)
    {
        ModelGraph g = package.Graph;
        var problems = new List<string>();
        var firstLayerOutputs = new HashSet<int>();
        // The quantized values each tensor can hold; the graph's input may hold any int8 value.
        var ranges = new (int Lo, int Hi)[g.Tensors.Length];
        ranges[g.InputTensor] = (sbyte.MinValue, sbyte.MaxValue);
        for (int n = 0; n < g.Nodes.Length; n++)
        {
            Node node = g.Nodes[n];
            bool firstLayer = Array.IndexOf(node.Inputs, g.InputTensor) >= 0;
            if (firstLayer) firstLayerOutputs.Add(node.Output);
            string where = $"node '{node.Name}'";

            if (node.Weights is not null && !firstLayer)
            {
                int outside = 0;
                foreach (sbyte w in node.Weights) if (w < -8 || w > 7) outside++;
                if (outside > 0) problems.Add($"{where}: {outside} weights outside the 4-bit range [-8, 7]");
            }
            if (node.WeightScales is not null)
            {
                int notPow2 = node.WeightScales.Count(s => !IsPowerOfTwo(s));
                if (notPow2 > 0) problems.Add($"{where}: {notPow2} weight scales are not powers of two");
            }

            int lo = node.ClampMin, hi = node.ClampMax;
            if (node.Kind == OpKind.Sigmoid && node.Table is not null)
            {
                lo = Math.Max(lo, node.Table.Min());
                hi = Math.Min(hi, node.Table.Max());
            }
            else if (Copies(g, node))
            {
                lo = Math.Max(lo, node.Inputs.Min(i => ranges[i].Lo));
                hi = Math.Min(hi, node.Inputs.Max(i => ranges[i].Hi));
            }
            // An empty intersection: every value is clamped to one level.
            if (lo > hi) hi = lo;
            ranges[node.Output] = (lo, hi);

            if (node.Output == g.LogitsTensor || node.Output == g.OutputTensor || firstLayer) continue;
            TensorSpec t = g.Tensors[node.Output];
            if (t.ZeroPoint != 0) problems.Add($"{where}: output zero point {t.ZeroPoint} is not 0 (symmetric)");
            if (!IsPowerOfTwo(t.Scale)) problems.Add($"{where}: output scale {t.Scale:G6} is not a power of two");
            if (hi - lo > 15) problems.Add($"{where}: output spans {hi - lo + 1} levels [{lo}, {hi}], more than 4 bits");
        }
        return problems;
    }

    /// <summary>
    /// True when the node's output values are its input values, clamped: a reshape (a view, same quantization by
    /// rule), or a clamp or concat whose inputs all have the output's scale and zero point (the rescale is the
    /// identity). Such a node cannot add levels to what its inputs hold.
    /// </summary>
    private static bool Copies(ModelGraph g, Node node)
    {
        if (node.Kind == OpKind.Reshape) return true;
        if (node.Kind is not (OpKind.Clamp or OpKind.Concat)) return false;
        TensorSpec output = g.Tensors[node.Output];
        return node.Inputs.All(i => g.Tensors[i].Scale == output.Scale && g.Tensors[i].ZeroPoint == output.ZeroPoint);
    }

    /// <summary>True when the value is exactly 2^k for an integer k.</summary>
    public static bool IsPowerOfTwo(double value)
    {
        if (!double.IsFinite(value) || value <= 0) return false;
        long bits = BitConverter.DoubleToInt64Bits(value);
        bool normal = ((bits >> 52) & 0x7FF) != 0;
        // A normal double is 2^k exactly when its mantissa is zero; a subnormal one when a single bit is set.
        return normal ? (bits & 0xF_FFFF_FFFF_FFFFL) == 0 : long.IsPow2(bits);
    }
}
