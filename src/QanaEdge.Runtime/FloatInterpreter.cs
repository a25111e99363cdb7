using QanaEdge.Model.Graph;
using QanaEdge.Model.Packaging;
using QanaEdge.Runtime.Plan;

namespace QanaEdge.Runtime;

/// <summary>
/// The second oracle: the same graph in dequantized (double) arithmetic. Weights become w·s_w, biases
/// bias·s_in·s_w, the sigmoid is the real function, the add a real add. With <c>fakeQuantize</c> each
/// tensor is rounded to its own grid (half away from zero, then the clamp), as training's fake quantization
/// does, so each node differs from the integer engine by its multiplier rounding only (≤ 1 quantum).
/// </summary>
public sealed class FloatInterpreter
{
    private readonly ModelGraph _graph;
    private readonly Op[] _ops;
    private readonly double[][] _values;

    public FloatInterpreter(ModelPackage package)
    {
        ArgumentNullException.ThrowIfNull(package);
        _graph = package.Graph;
        _ops = Planner.Prepare(_graph, optimized: false);
        _values = _graph.Tensors.Select(t => new double[t.Length]).ToArray();
    }

    /// <summary>Real values of a tensor after the last <see cref="Run"/>.</summary>
    public ReadOnlySpan<double> Values(int tensorIndex) => _values[tensorIndex];

    /// <summary>Runs the whole graph from a quantized input. Logits are returned as real numbers.</summary>
    public ReadOnlySpan<double> Run(ReadOnlySpan<sbyte> input, bool fakeQuantize = true)
    {
        var inSpec = _graph.Tensors[_graph.InputTensor];
        if (input.Length != inSpec.Length) throw new ArgumentException($"the model expects {inSpec.Length} input values, got {input.Length}", nameof(input));
        for (int i = 0; i < input.Length; i++) _values[_graph.InputTensor][i] = inSpec.Scale * (input[i] - inSpec.ZeroPoint);
        foreach (var op in _ops)
        {
            if (op is ReadoutOp) continue;   // the readout counts spikes of int8 logits: see QuantizedLogits
            var ins = op.InputIndices.Select(t => _values[t]).ToArray();
            EvalNode(op, ins, _values[op.OutputIndex], 1.0);
            ClampReal(op, _values[op.OutputIndex]);
            if (fakeQuantize) Quantize(op.Output, _values[op.OutputIndex], null);
        }
        return _values[_graph.LogitsTensor];
    }

    /// <summary>
    /// Evaluates one node in real arithmetic on given quantized inputs and returns its quantized output:
    /// the per-node oracle the tests compare the integer kernels with.
    /// </summary>
    public sbyte[] EvalNodeQuantized(int nodeIndex, params sbyte[][] inputs)
    {
        var op = _ops[nodeIndex];
        var ins = new double[inputs.Length][];
        for (int k = 0; k < inputs.Length; k++)
        {
            var spec = op.Inputs[k];
            ins[k] = inputs[k].Select(q => spec.Scale * (q - spec.ZeroPoint)).ToArray();
        }
        var y = new double[op.Output.Length];
        EvalNode(op, ins, y, 1.0);
        ClampReal(op, y);
        var q = new sbyte[y.Length];
        Quantize(op.Output, y, q);
        return q;
    }

    private static void ClampReal(Op op, double[] y)
    {
        if (op is ReadoutOp) return;
        double lo = op.Output.Scale * (op.Lo - op.Output.ZeroPoint), hi = op.Output.Scale * (op.Hi - op.Output.ZeroPoint);
        for (int i = 0; i < y.Length; i++) y[i] = Math.Clamp(y[i], lo, hi);
    }

    /// <summary>Rounds real values to the tensor's int8 grid (half away from zero, then clamp to int8).</summary>
    internal static void Quantize(TensorSpec spec, double[] y, sbyte[]? q)
    {
        for (int i = 0; i < y.Length; i++)
        {
            double v = spec.ZeroPoint + Math.Round(y[i] / spec.Scale, MidpointRounding.AwayFromZero);
            v = Math.Clamp(v, sbyte.MinValue, sbyte.MaxValue);
            if (q is not null) q[i] = (sbyte)v;
            y[i] = spec.Scale * (v - spec.ZeroPoint);
        }
    }

    /// <summary>
    /// Real-valued evaluation of one node (no clamp, no rounding). <paramref name="biasFraction"/> scales the
    /// bias: 1 for a normal pass, 1/T for one step of the time-stepped simulation.
    /// </summary>
    internal static void EvalNode(Op op, double[][] x, double[] y, double biasFraction)
    {
        switch (op)
        {
            case ConvOp c: Conv(c, x[0], y, biasFraction); break;
            case AddOp: for (int i = 0; i < y.Length; i++) y[i] = x[0][i] + x[1][i]; break;
            case ConcatOp cat:
            {
                int positions = cat.Output.Height * cat.Output.Width, cOut = cat.Output.Channels, c0 = 0;
                for (int k = 0; k < x.Length; k++)
                {
                    int ch = cat.Inputs[k].Channels;
                    for (int p = 0; p < positions; p++)
                        for (int j = 0; j < ch; j++) y[p * cOut + c0 + j] = x[k][p * ch + j];
                    c0 += ch;
                }
                break;
            }
            case GapOp gap:
            {
                int ch = gap.Inputs[0].Channels, positions = gap.Inputs[0].Height * gap.Inputs[0].Width;
                for (int j = 0; j < ch; j++)
                {
                    double sum = 0;
                    for (int p = 0; p < positions; p++) sum += x[0][p * ch + j];
                    y[j] = sum / positions;
                }
                break;
            }
            case SigmoidOp: for (int i = 0; i < y.Length; i++) y[i] = 1.0 / (1.0 + Math.Exp(-x[0][i])); break;
            case MulOp mul:
            {
                int ch = mul.Output.Channels, positions = mul.Output.Height * mul.Output.Width;
                for (int p = 0; p < positions; p++)
                for (int j = 0; j < ch; j++)
                {
                    int gi = mul.Shape switch { GateShape.Channel => j, GateShape.Spatial => p, _ => p * ch + j };
                    y[p * ch + j] = x[0][p * ch + j] * x[1][gi];
                }
                break;
            }
            case RescaleOp: Array.Copy(x[0], y, y.Length); break;
            default: throw new InvalidOperationException($"{op.Node.Kind} has no real-valued form");
        }
    }

    private static void Conv(ConvOp c, double[] x, double[] y, double biasFraction)
    {
        var ws = c.Node.WeightScales!;
        double inScale = c.Inputs[0].Scale;
        for (int oy = 0; oy < c.Hout; oy++)
        for (int ox = 0; ox < c.Wout; ox++)
        for (int co = 0; co < c.Cout; co++)
        {
            double s = ws[ws.Length == 1 ? 0 : co];
            double acc = 0;
            switch (c.Kind)
            {
                case OpKind.Conv2D:
                    for (int ky = 0; ky < c.Kh; ky++)
                    {
                        int iy = oy * c.Sh - c.PadTop + ky;
                        if ((uint)iy >= (uint)c.Hin) continue;
                        for (int kx = 0; kx < c.Kw; kx++)
                        {
                            int ix = ox * c.Sw - c.PadLeft + kx;
                            if ((uint)ix >= (uint)c.Win) continue;
                            for (int ci = 0; ci < c.Cin; ci++)
                                acc += c.W[((co * c.Kh + ky) * c.Kw + kx) * c.Cin + ci] * x[(iy * c.Win + ix) * c.Cin + ci];
                        }
                    }
                    break;
                case OpKind.DepthwiseConv2D:
                    for (int ky = 0; ky < c.Kh; ky++)
                    {
                        int iy = oy * c.Sh - c.PadTop + ky;
                        if ((uint)iy >= (uint)c.Hin) continue;
                        for (int kx = 0; kx < c.Kw; kx++)
                        {
                            int ix = ox * c.Sw - c.PadLeft + kx;
                            if ((uint)ix >= (uint)c.Win) continue;
                            acc += c.W[(ky * c.Kw + kx) * c.Cout + co] * x[(iy * c.Win + ix) * c.Cout + co];
                        }
                    }
                    break;
                default:
                {
                    int row = (oy * c.Wout + ox) * c.Cin;
                    for (int ci = 0; ci < c.Cin; ci++) acc += c.W[co * c.Cin + ci] * x[row + ci];
                    break;
                }
            }
            y[(oy * c.Wout + ox) * c.Cout + co] = s * acc + biasFraction * c.Bias[co] * inScale * s;
        }
    }
}
