using QanaEdge.Model.Graph;
using QanaEdge.Model.Packaging;
using QanaEdge.Runtime.Plan;

namespace QanaEdge.Runtime;

/// <summary>How closely a time-stepped run reproduced the integer run.</summary>
public sealed class TimeSteppedReport
{
    public required int TimeSteps { get; init; }
    /// <summary>Mean |spike count − integer activation| over every IF neuron, in activation quanta.</summary>
    public required double SpikingMeanAbsError { get; init; }
    /// <summary>Fraction of IF neurons whose spike count equals the integer activation exactly.</summary>
    public required double SpikingExactFraction { get; init; }
    /// <summary>Mean |simulated logit − integer logit| in logit quanta.</summary>
    public required double LogitMeanAbsError { get; init; }
    /// <summary>True when the simulated and the integer logits have the same arg-max.</summary>
    public required bool ArgMaxAgrees { get; init; }
    /// <summary>Per spiking tensor: name and mean absolute error in quanta.</summary>
    public required IReadOnlyList<(string Tensor, double MeanAbsError)> Layers { get; init; }
}

/// <summary>
/// Analysis mode: the whole network as integrate-and-fire neurons over T steps (Rueckauer et al. 2017 in
/// integer units). The input is rate coded (an IF neuron per pixel driven by (q − z)/T). Every clamped
/// (ReLU/ReLU6) activation becomes an IF neuron with subtractive reset whose threshold is one activation
/// quantum, so its spike count over T approximates the integer activation (exactly once T ≥ the largest
/// activation, up to the rounding the integer run does). Linear nodes pass their per-step input currents
/// on (bias spread as bias/T); the nonlinear ones (sigmoid, gates) act on the running rate estimate and
/// emit the increment of their output, so every tensor's sum over T approximates its integer value.
/// Membrane potentials are doubles: this is a model of the spiking hardware, not a production kernel.
/// </summary>
public sealed class TimeSteppedSimulator
{
    private readonly ModelGraph _graph;
    private readonly Op[] _ops;
    private readonly int _t;
    private readonly double[][] _step, _sum, _membrane, _prevTotal;
    private readonly bool[] _spiking;
    private readonly sbyte[] _logits;
    private readonly int[] _counts;

    public TimeSteppedSimulator(ModelPackage package, int timeSteps)
    {
        ArgumentNullException.ThrowIfNull(package);
        if (timeSteps <= 0) throw new ArgumentOutOfRangeException(nameof(timeSteps), "T must be positive");
        _graph = package.Graph;
        _ops = Planner.Prepare(_graph, optimized: false);
        _t = timeSteps;
        int n = _graph.Tensors.Length;
        _step = new double[n][]; _sum = new double[n][]; _membrane = new double[n][]; _prevTotal = new double[n][];
        for (int i = 0; i < n; i++)
        {
            int len = _graph.Tensors[i].Length;
            _step[i] = new double[len]; _sum[i] = new double[len]; _membrane[i] = new double[len]; _prevTotal[i] = new double[len];
        }
        _spiking = new bool[n];
        _spiking[_graph.InputTensor] = true;
        foreach (var op in _ops)
            _spiking[op.OutputIndex] = IsRectified(op);
        _logits = new sbyte[_graph.Tensors[_graph.LogitsTensor].Length];
        var readout = _ops.OfType<ReadoutOp>().LastOrDefault();
        _counts = new int[readout?.Output.Length ?? 0];
    }

    /// <summary>
    /// A ReLU/ReLU6 activation: a weighted, concat, add or clamp node whose output cannot go below real 0
    /// (lower clamp at or above the zero point; with zero point −128 the int8 range itself is the ReLU).
    /// </summary>
    private static bool IsRectified(Op op) =>
        op is ConvOp or ConcatOp or AddOp or RescaleOp && op.Node.Kind != Model.Graph.OpKind.Reshape && op.Lo >= op.Output.ZeroPoint;

    public int TimeSteps => _t;
    public ReadOnlySpan<sbyte> Logits => _logits;
    public ReadOnlySpan<int> SpikeCounts => _counts;
    public TimeSteppedReport? LastReport { get; private set; }

    /// <summary>Runs T steps on a quantized input and compares with a reference integer run of the same input.</summary>
    public TimeSteppedReport Run(ReadOnlySpan<sbyte> input)
    {
        using var reference = IntegerEngine.Create(new ModelPackage { Manifest = null!, Graph = _graph }, KernelMode.Reference,
            new EngineOptions { ReuseBuffers = false });
        reference.Run(input);
        return Run(input, t => reference.Activation(t).ToArray());
    }

    internal void Run(ReadOnlySpan<sbyte> input, ExecState integerRun) => Run(input, t => integerRun.Tensor(t).ToArray());

    private TimeSteppedReport Run(ReadOnlySpan<sbyte> input, Func<int, sbyte[]> integer)
    {
        foreach (var a in _sum) Array.Clear(a);
        foreach (var a in _membrane) Array.Clear(a);
        foreach (var a in _prevTotal) Array.Clear(a);
        var inSpec = _graph.Tensors[_graph.InputTensor];
        int inT = _graph.InputTensor;
        for (int t = 1; t <= _t; t++)
        {
            // Rate-coded input: current (q − z)·s/T per step into an IF neuron with threshold s.
            for (int i = 0; i < input.Length; i++)
                _step[inT][i] = Fire(inT, i, inSpec.Scale * (input[i] - inSpec.ZeroPoint) / _t, inSpec, sbyte.MinValue, sbyte.MaxValue);
            foreach (var op in _ops)
            {
                if (op is ReadoutOp) continue;
                int o = op.OutputIndex;
                var current = _step[o];
                switch (op)
                {
                    case SigmoidOp:
                    {
                        var x = _sum[op.InputIndices[0]];
                        for (int i = 0; i < current.Length; i++)
                        {
                            double total = 1.0 / (1.0 + Math.Exp(-x[i] * _t / t)) * t / _t;
                            current[i] = total - _prevTotal[o][i];
                            _prevTotal[o][i] = total;
                        }
                        break;
                    }
                    case MulOp mul:
                    {
                        var x = _sum[op.InputIndices[0]];
                        var g = _sum[op.InputIndices[1]];
                        int ch = mul.Output.Channels;
                        double rate = (double)_t / t;
                        for (int i = 0; i < current.Length; i++)
                        {
                            int p = i / ch, j = i % ch;
                            int gi = mul.Shape switch { GateShape.Channel => j, GateShape.Spatial => p, _ => i };
                            double total = x[i] * rate * g[gi] * rate * t / _t;
                            current[i] = total - _prevTotal[o][i];
                            _prevTotal[o][i] = total;
                        }
                        break;
                    }
                    default:
                        FloatInterpreter.EvalNode(op, op.InputIndices.Select(k => _step[k]).ToArray(), current, 1.0 / _t);
                        break;
                }
                if (_spiking[o])
                    for (int i = 0; i < current.Length; i++) current[i] = Fire(o, i, current[i], op.Output, op.Lo, op.Hi);
                else
                    for (int i = 0; i < current.Length; i++) _sum[o][i] += current[i];
            }
        }

        // Decode and compare with the integer run.
        var layers = new List<(string, double)>();
        double errSum = 0;
        long neurons = 0, exact = 0;
        foreach (var op in _ops.Where(o => _spiking[o.OutputIndex]))
        {
            var q = integer(op.OutputIndex);
            double err = 0;
            for (int i = 0; i < q.Length; i++)
            {
                double count = _sum[op.OutputIndex][i] / op.Output.Scale;
                double d = Math.Abs(count - (q[i] - op.Output.ZeroPoint));
                err += d;
                if (d < 0.5) exact++;
            }
            layers.Add((op.Output.Name, err / q.Length));
            errSum += err;
            neurons += q.Length;
        }
        var logitSpec = _graph.Tensors[_graph.LogitsTensor];
        var intLogits = integer(_graph.LogitsTensor);
        double logitErr = 0;
        for (int k = 0; k < _logits.Length; k++)
        {
            double v = logitSpec.ZeroPoint + Math.Round(_sum[_graph.LogitsTensor][k] / logitSpec.Scale, MidpointRounding.AwayFromZero);
            _logits[k] = (sbyte)Math.Clamp(v, sbyte.MinValue, sbyte.MaxValue);
            logitErr += Math.Abs(_logits[k] - intLogits[k]);
        }
        var readout = _ops.OfType<ReadoutOp>().LastOrDefault();
        if (readout is not null) SpikingReadout.Simulate(_logits, readout.Thresholds, readout.TimeSteps, _counts);
        LastReport = new TimeSteppedReport
        {
            TimeSteps = _t,
            SpikingMeanAbsError = neurons == 0 ? 0 : errSum / neurons,
            SpikingExactFraction = neurons == 0 ? 1 : (double)exact / neurons,
            LogitMeanAbsError = _logits.Length == 0 ? 0 : logitErr / _logits.Length,
            ArgMaxAgrees = ArgMax(_logits) == ArgMax(intLogits),
            Layers = layers,
        };
        return LastReport;
    }

    /// <summary>
    /// IF neuron with subtractive reset, threshold one quantum s: at most one spike (±s) per step, and never
    /// beyond the clamp [s·(lo − z), s·(hi − z)] in total (the bounded ReLU6 ceiling is a refractory limit).
    /// </summary>
    private double Fire(int tensor, int i, double current, TensorSpec spec, int lo, int hi)
    {
        double s = spec.Scale;
        ref double u = ref _membrane[tensor][i];
        ref double total = ref _sum[tensor][i];
        u += current;
        double eps = 1e-9 * s;
        double spike = 0;
        if (u >= s - eps && total + s <= s * (hi - spec.ZeroPoint) + eps) spike = s;
        else if (u <= -s + eps && total - s >= s * (lo - spec.ZeroPoint) - eps) spike = -s;
        u -= spike;
        total += spike;
        return spike;
    }

    private static int ArgMax(ReadOnlySpan<sbyte> v)
    {
        int best = 0;
        for (int k = 1; k < v.Length; k++) if (v[k] > v[best]) best = k;
        return best;
    }
}
