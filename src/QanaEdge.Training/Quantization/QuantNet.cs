using QanaEdge.Model;
using QanaEdge.Model.Graph;
using QanaEdge.Runtime;
using QanaEdge.Training.Engine;
using QanaEdge.Training.Network;

namespace QanaEdge.Training.Quantization;

/// <summary>A tensor of the integer graph as the fake-quantized network sees it.</summary>
public sealed class QTensor
{
    public required string Name { get; init; }
    public Tensor Value { get; set; } = null!;
    public ActivationGrid Grid { get; set; }
    /// <summary>Real bounds known a priori (ReLU6 ⇒ [0, 6], sigmoid ⇒ [0, 1]); null: calibrated from data.</summary>
    public (double Lo, double Hi)? Bounds { get; init; }
    /// <summary>Fused clamp in real terms (ReLU6: [0, 6], ReLU: [0, ∞)); null: none.</summary>
    public (double Lo, double Hi)? Clamp { get; init; }
    public bool FirstLayer { get; init; }
    public FakeQuant? Fq { get; init; }
    public int Height => Value.H;
    public int Width => Value.W;
    public int Channels => Value.C;

    /// <summary>The fused clamp in the quantized domain, within the grid.</summary>
    public (int Min, int Max) QuantClamp
    {
        get
        {
            int lo = Grid.QMin, hi = Grid.QMax;
            if (Clamp is { } c)
            {
                lo = Math.Max(lo, QuantMath.Quantize(c.Lo, Grid.Scale, Grid.ZeroPoint, Grid.QMin, Grid.QMax));
                if (!double.IsPositiveInfinity(c.Hi)) hi = Math.Min(hi, QuantMath.Quantize(c.Hi, Grid.Scale, Grid.ZeroPoint, Grid.QMin, Grid.QMax));
            }
            return (lo, hi);
        }
    }
}

/// <summary>One node of the integer graph, executed in float with fake quantization.</summary>
public abstract class QStep
{
    public required string Name { get; init; }
    public required OpKind Kind { get; init; }
    public required QTensor[] Inputs { get; init; }
    public required QTensor Output { get; init; }
    public string Reparameterisation { get; init; } = "none";
    public string KernelName { get; init; } = "";
    public abstract void Forward(Tape tape);
    public virtual IEnumerable<Parameter> Parameters => [];

    /// <summary>Quantizes the raw float result into the output tensor (or records its range while calibrating).</summary>
    protected void Finish(Tape tape, Tensor raw)
    {
        Output.Value = Output.Fq is null ? raw : Output.Fq.Forward(tape, raw);
    }
}

/// <summary>Convolution / depthwise / pointwise / dense with quantized weights (STE to float masters) and bias.</summary>
public sealed class WeightedStep : QStep
{
    public required Layer Layer { get; init; }
    public required Parameter MasterWeight { get; init; }
    public required Parameter MasterBias { get; init; }
    /// <summary>Quantize weights during training (off for the head when the quant-head switch is off).</summary>
    public bool QuantizeWeights { get; set; } = true;
    public required QuantScheme Scheme { get; init; }
    private readonly GradLink _link;

    public WeightedStep() => _link = new GradLink(this);

    public override IEnumerable<Parameter> Parameters => [MasterWeight, MasterBias];

    private Parameter LayerWeight => Layer switch { Conv2d c => c.Weight, DepthwiseConv2d d => d.Weight, Dense d => d.Weight, _ => throw new InvalidOperationException() };
    private Parameter LayerBias => Layer switch { Conv2d c => c.Bias!, DepthwiseConv2d d => d.Bias!, Dense d => d.Bias, _ => throw new InvalidOperationException() };

    /// <summary>Output channels; weights are laid out with the output channel fastest ([K, Cout] / [Kh,Kw,C] / [In, Out]).</summary>
    public int OutChannels => MasterBias.Length;

    /// <summary>Per-output-channel weight scales for the current masters.</summary>
    public double[] WeightScales()
    {
        int c = OutChannels;
        var max = new double[c];
        var w = MasterWeight.Value;
        for (int i = 0; i < w.Length; i++) max[i % c] = Math.Max(max[i % c], Math.Abs(w[i]));
        return max.Select(m => Scheme.WeightScale(m, Output.FirstLayer)).ToArray();
    }

    /// <summary>The int32 bias range, [−2^30, 2^30 − 1]: half of int32 either way, which leaves the accumulator room for
    /// the weighted sum on top of the bias.</summary>
    public const int BiasMin = int.MinValue / 2, BiasMax = int.MaxValue / 2;

    /// <summary>Integer weights (output channel fastest, as the masters) and int32 bias at s_in·s_w, clamped to
    /// [<see cref="BiasMin"/>, <see cref="BiasMax"/>] (<see cref="SaturatedBiases"/> names the channels where that bites).</summary>
    public (sbyte[] Weights, int[] Bias, double[] Scales) QuantizedParameters()
    {
        var scales = WeightScales();
        int c = OutChannels, lo = Scheme.WeightQMin(Output.FirstLayer), hi = Scheme.WeightQMax(Output.FirstLayer);
        var w = MasterWeight.Value;
        var q = new sbyte[w.Length];
        for (int i = 0; i < w.Length; i++) q[i] = (sbyte)QuantMath.Quantize(w[i], scales[i % c], 0, lo, hi);
        double sIn = Inputs[0].Grid.Scale;
        var b = new int[c];
        for (int k = 0; k < c; k++) b[k] = (int)Math.Clamp(BiasSteps(k, sIn, scales), BiasMin, BiasMax);
        return (q, b, scales);
    }

    /// <summary>A channel's bias in steps of s_in·s_w[k], rounded half away from zero, before any clamp.</summary>
    private double BiasSteps(int k, double sIn, double[] scales) =>
        Math.Round(MasterBias.Value[k] / (sIn * scales[k]), MidpointRounding.AwayFromZero);

    /// <summary>
    /// Channels whose bias does not fit the int32 bias range (or is not a number). The weight scale follows the
    /// channel's largest weight down to a floor of 1e-8/127, so a channel whose weights are all about zero has a
    /// bias step so small that an ordinary bias becomes billions of steps: <see cref="QuantizedParameters"/> clamps
    /// it, and the channel then outputs about 0 instead of its bias, in training and in the engine alike. Conversion
    /// refuses such a model (<see cref="Conversion.Converter"/>); an input grid must be fixed first.
    /// </summary>
    public IReadOnlyList<(int Channel, float Bias, double Steps, double MaxAbsWeight)> SaturatedBiases()
    {
        var scales = WeightScales();
        double sIn = Inputs[0].Grid.Scale;
        int c = OutChannels;
        var saturated = new List<(int, float, double, double)>();
        for (int k = 0; k < c; k++)
        {
            double steps = BiasSteps(k, sIn, scales);
            if (steps >= BiasMin && steps <= BiasMax) continue; // written so that NaN is saturated too
            double max = 0;
            for (int i = k; i < MasterWeight.Length; i += c) max = Math.Max(max, Math.Abs(MasterWeight.Value[i]));
            saturated.Add((k, MasterBias.Value[k], steps, max));
        }
        return saturated;
    }

    public override void Forward(Tape tape)
    {
        var lw = LayerWeight.Value; var lb = LayerBias.Value;
        if (QuantizeWeights && Output.Fq is { Enabled: true, Observe: false })
        {
            var (q, b, scales) = QuantizedParameters();
            int c = OutChannels;
            double sIn = Inputs[0].Grid.Scale;
            for (int i = 0; i < q.Length; i++) lw[i] = (float)(q[i] * scales[i % c]);
            for (int k = 0; k < c; k++) lb[k] = (float)(b[k] * sIn * scales[k]);
            Output.Fq.Accumulator = new AccumulatorRequant(
                scales.Select(w => sIn * w).ToArray(),
                scales.Select(w => QuantizedMultiplier.FromReal(sIn * w / Output.Grid.Scale)).ToArray());
        }
        else
        {
            MasterWeight.Value.CopyTo(lw, 0);
            MasterBias.Value.CopyTo(lb, 0);
            if (Output.Fq is not null) Output.Fq.Accumulator = null;
        }
        tape.Record(_link);
        var x = Inputs[0].Value;
        Tensor raw = Layer switch
        {
            Conv2d conv => conv.Forward(tape, x),
            DepthwiseConv2d dw => dw.Forward(tape, x),
            Dense d => d.Forward(tape, x),
            _ => throw new InvalidOperationException(),
        };
        Finish(tape, raw);
    }

    /// <summary>Straight-through estimator for the weights: recorded before the layer so that its Backward runs after it.</summary>
    private sealed class GradLink(WeightedStep owner) : Layer(owner.Name + ".ste")
    {
        public override void Backward()
        {
            var lw = owner.LayerWeight; var lb = owner.LayerBias;
            Kernels.AddInPlace(owner.MasterWeight.Grad, lw.Grad);
            Kernels.AddInPlace(owner.MasterBias.Grad, lb.Grad);
            lw.ZeroGrad(); lb.ZeroGrad();
        }
    }
}

/// <summary>Parameter-free steps: concat, add, mul (gate), GAP, sigmoid (a table in the integer graph), reshape.</summary>
public sealed class SimpleStep : QStep
{
    public required Layer Op { get; init; }

    public override void Forward(Tape tape)
    {
        Tensor raw = Op switch
        {
            Engine.Concat c => c.Forward(tape, Inputs[0].Value, Inputs[1].Value),
            Engine.Add a => a.Forward(tape, Inputs[0].Value, Inputs[1].Value),
            Engine.Mul m => m.Forward(tape, Inputs[0].Value, Inputs[1].Value),
            GlobalAvgPool g => g.Forward(tape, Inputs[0].Value),
            Activation s => s.Forward(tape, Inputs[0].Value),
            TableSigmoid t => t.Forward(tape, Inputs[0].Value),
            Flatten f => f.Forward(tape, Inputs[0].Value),
            _ => throw new InvalidOperationException(),
        };
        Finish(tape, raw);
        if (Output.Fq is { Enabled: true, Observe: false } fq)
        {
            if (Op is GlobalAvgPool) RequantizeLikeTheEngine(fq);
            else if (Op is Engine.Add) AddLikeTheEngine(fq);
        }
    }

    /// <summary>The engine's left shift before an Add's input rescales (Runtime's AddOp.LeftShift).</summary>
    private const int AddLeftShift = 20;

    /// <summary>
    /// The engine's Add (AddOp, gemmlowp's alignment): with s_max = max(s_a, s_b), each input's q − z is shifted left by
    /// 20 bits and rescaled by the Q31 multiplier s/(2·s_max), the two are summed and the sum requantized by
    /// 2·s_max/(2^20·s_out): three roundings. Rounding the float sum once to the output grid broke near-ties the other way
    /// on paper8 grids (the residual add of a full-size network, first of all its nodes to differ from the engine). Only
    /// the forward values are replaced; the gradient stays the float add's, through the straight-through mask.
    /// </summary>
    private void AddLikeTheEngine(FakeQuant fq)
    {
        var a = Inputs[0].Value; var b = Inputs[1].Value;
        var y = Output.Value;
        double sa = Inputs[0].Grid.Scale, sb = Inputs[1].Grid.Scale, sMax = Math.Max(sa, sb);
        var ma = QuantizedMultiplier.FromReal(sa / (2 * sMax));
        var mb = QuantizedMultiplier.FromReal(sb / (2 * sMax));
        var mo = QuantizedMultiplier.FromReal(2 * sMax / ((1 << AddLeftShift) * Output.Grid.Scale));
        int zOut = fq.ZeroPoint, lo = fq.QMin, hi = fq.QMax;
        float sOut = fq.Scale;
        Par.For(y.N, (_, st, e) =>
        {
            int ps = y.PerSample;
            var xa = a.Data.AsSpan(st * ps, (e - st) * ps);
            var xb = b.Data.AsSpan(st * ps, (e - st) * ps);
            var ys = y.Data.AsSpan(st * ps, (e - st) * ps);
            for (int i = 0; i < ys.Length; i++)
            {
                // The inputs' codes less their zero points: x = s·(q − z).
                int da = (int)Math.Round(xa[i] / sa, MidpointRounding.AwayFromZero);
                int db = (int)Math.Round(xb[i] / sb, MidpointRounding.AwayFromZero);
                long va = Requant.Scale(da << AddLeftShift, ma.Multiplier, ma.RightShift);
                long vb = Requant.Scale(db << AddLeftShift, mb.Multiplier, mb.RightShift);
                ys[i] = sOut * (Requant.Apply((int)(va + vb), mo, zOut, lo, hi) - zOut);
            }
        });
    }

    /// <summary>
    /// The engine's global average pool (GapOp): acc_c = Σ_hw (q − z_in), then z_out + R(acc_c, s_in/(H·W·s_out)) with
    /// the Q31 multiplier. Rounding the float mean to the output grid broke the frequent exact ties (acc_c/(H·W) on a
    /// half step) and near-ties the other way from the rounded multiplier, so on paper8 grids the SE gate and the pooled
    /// head's input differed from the engine's. Only the forward values are replaced: the gradient stays the float
    /// pool's, through the quantizer's straight-through mask.
    /// </summary>
    private void RequantizeLikeTheEngine(FakeQuant fq)
    {
        var x = Inputs[0].Value;
        var y = Output.Value;
        double sIn = Inputs[0].Grid.Scale;
        int positions = x.H * x.W, c = x.C, zOut = fq.ZeroPoint, lo = fq.QMin, hi = fq.QMax;
        float sOut = fq.Scale;
        var m = QuantizedMultiplier.FromReal(sIn / (positions * Output.Grid.Scale));
        Par.For(x.N, (_, st, e) =>
        {
            for (int n = st; n < e; n++)
            {
                var xs = x.Sample(n);
                var ys = y.Sample(n);
                for (int ch = 0; ch < c; ch++)
                {
                    int acc = 0; // the input's codes less its zero point: x = s_in·(q − z_in)
                    for (int p = 0; p < positions; p++) acc += (int)Math.Round(xs[p * c + ch] / sIn, MidpointRounding.AwayFromZero);
                    ys[ch] = sOut * (Requant.Apply(acc, m, zOut, lo, hi) - zOut);
                }
            }
        });
    }
}

/// <summary>
/// The BN-folded, fake-quantized QANA: one step per integer-graph node, so that conversion is a
/// one-to-one translation and the float model evaluated here is the model the integer engine runs.
/// </summary>
public sealed class QuantNet : ITrainable
{
    public QuantScheme Scheme { get; }
    public QanaOptions Options { get; }
    public QTensor Input { get; }
    public List<QStep> Steps { get; } = [];
    public QTensor Logits => Steps[^1].Output;

    internal QuantNet(QuantScheme scheme, QanaOptions options, QTensor input)
    {
        Scheme = scheme; Options = options; Input = input;
    }

    /// <summary>The input grid the device's pixels arrive on unchanged: q = p − 128 at scale 1/255 (the fast path of
    /// <see cref="InputQuantizer"/>), so the network's input p/255 needs no quantization.</summary>
    public static readonly ActivationGrid DefaultInputGrid = new(1.0 / 255, -128, -128, 127);

    /// <summary>True for the grid <see cref="InputQuantizer"/> maps to its p − 128 fast path (the same test).</summary>
    public static bool IsDefaultInputGrid(ActivationGrid g) =>
        Math.Abs(g.Scale - 1.0 / 255) < 1e-12 && g.ZeroPoint == -128 && g.QMin == -128 && g.QMax == 127;

    /// <summary>An input grid the engine can be given: int8 codes (InputQuantizer clamps to [−128, 127]), a positive
    /// finite scale and an int8 zero point.</summary>
    public static void CheckInputGrid(ActivationGrid g)
    {
        if (!double.IsFinite(g.Scale) || g.Scale <= 0 || g.ZeroPoint < sbyte.MinValue || g.ZeroPoint > sbyte.MaxValue
            || g.QMin != sbyte.MinValue || g.QMax != sbyte.MaxValue)
            throw new ArgumentException(
                $"input quantization scale {g.Scale}, zero point {g.ZeroPoint}, codes [{g.QMin}, {g.QMax}]: the device quantizes pixels " +
                "to int8 codes [-128, 127] with a positive scale and an int8 zero point");
    }

    private readonly Tensor _quantizedInput = new() { RequiresGrad = false };
    private float[] _inputLevels = [];
    private ActivationGrid _inputLevelsGrid;

    public IEnumerable<Parameter> Parameters => Steps.SelectMany(s => s.Parameters);

    public IEnumerable<QTensor> Tensors => Steps.Select(s => s.Output);

    /// <summary>Runs the steps on <paramref name="x"/>, images as floats p/255 (as the float network takes them).</summary>
    public Tensor Forward(Tape tape, Tensor x)
    {
        Input.Value = IsDefaultInputGrid(Input.Grid) ? x : OnInputGrid(x);
        foreach (var s in Steps) s.Forward(tape);
        return Logits.Value;
    }

    /// <summary>
    /// The input as the engine sees it on another input grid: each value is taken back to its pixel byte
    /// p = round(255·x) and replaced by s·(q − zp) with q from <see cref="InputQuantizer"/> itself, so the rounding
    /// and the int8 saturation are the device's. (On the default grid q − zp = p and the input passes unchanged: feeding
    /// p/255 as the integer graph's input only held there.) The input needs no gradient.
    /// </summary>
    private Tensor OnInputGrid(Tensor x)
    {
        if (_inputLevels.Length == 0 || _inputLevelsGrid != Input.Grid)
        {
            var g = Input.Grid;
            CheckInputGrid(g);
            var pixels = new byte[256];
            for (int p = 0; p < 256; p++) pixels[p] = (byte)p;
            var codes = new sbyte[256];
            InputQuantizer.Quantize(pixels, codes, g.Scale, g.ZeroPoint);
            _inputLevels = codes.Select(q => (float)(g.Scale * (q - g.ZeroPoint))).ToArray();
            _inputLevelsGrid = g;
        }
        var levels = _inputLevels;
        var y = _quantizedInput.Reshape(x.N, x.H, x.W, x.C);
        Par.For(x.N, (_, st, e) =>
        {
            int ps = x.PerSample;
            var xs = x.Data.AsSpan(st * ps, (e - st) * ps);
            var ys = y.Data.AsSpan(st * ps, (e - st) * ps);
            for (int i = 0; i < xs.Length; i++)
                ys[i] = levels[Math.Clamp((int)MathF.Round(xs[i] * 255f, MidpointRounding.AwayFromZero), 0, 255)];
        });
        return y;
    }

    /// <summary>Observe mode on every quantizer (calibration) or back to quantizing.</summary>
    public void SetObserve(bool observe)
    {
        foreach (var t in Tensors) if (t.Fq is not null) { t.Fq.Observe = observe; if (observe) t.Fq.ResetObserved(); }
    }

    /// <summary>Fake quantization on or off everywhere (off: the BN-folded float network, for checks).</summary>
    public void SetEnabled(bool enabled)
    {
        foreach (var t in Tensors) if (t.Fq is not null) t.Fq.Enabled = enabled;
    }

    /// <summary>Fixes every tensor's grid: a priori bounds where known, else the observed range.</summary>
    public void FreezeGrids()
    {
        foreach (var t in Tensors)
        {
            if (t.Fq is null) continue;
            double lo, hi;
            if (t.Bounds is { } b) { lo = b.Lo; hi = b.Hi; }
            else { lo = t.Fq.ObservedMin; hi = t.Fq.ObservedMax; if (t.Clamp is { } c) lo = Math.Max(lo, c.Lo); }
            if (!double.IsFinite(lo) || !double.IsFinite(hi)) throw new InvalidOperationException($"{t.Name}: no range observed (calibrate first)");
            t.Grid = Scheme.Activation(lo, hi, t.FirstLayer);
            var (qmin, qmax) = t.QuantClamp;
            t.Fq.Scale = (float)t.Grid.Scale; t.Fq.ZeroPoint = t.Grid.ZeroPoint; t.Fq.QMin = qmin; t.Fq.QMax = qmax;
        }
        // A reshape is a view: its output keeps the input's grid. Sigmoids become their integer tables.
        foreach (var s in Steps)
        {
            if (s.Kind == OpKind.Reshape) s.Output.Grid = s.Inputs[0].Grid;
            if (s is SimpleStep { Op: TableSigmoid t })
            {
                var (qmin, qmax) = s.Output.QuantClamp;
                t.SetTable(s.Inputs[0].Grid, Conversion.Converter.SigmoidTable(s.Inputs[0].Grid, s.Output.Grid, qmin, qmax), s.Output.Grid);
            }
        }
    }
}
