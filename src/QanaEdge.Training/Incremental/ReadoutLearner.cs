using QanaEdge.Model.Graph;
using QanaEdge.Model.Packaging;
using QanaEdge.Runtime;
using QanaEdge.Training.Data;
using QanaEdge.Training.Engine;
using QanaEdge.Training.Pipeline;
using QanaEdge.Training.Quantization;

namespace QanaEdge.Training.Incremental;

/// <summary>Settings of <see cref="ReadoutLearner"/>.</summary>
public sealed record ReadoutLearnerOptions
{
    /// <summary>Passes over the labelled cases.</summary>
    public int Epochs { get; init; } = 10;
    /// <summary>Adam step size on the real-valued head weights.</summary>
    public float LearningRate { get; init; } = 1e-4f;
    public int BatchSize { get; init; } = 32;
    /// <summary>λ of the penalty λ/2·‖W − W₀‖² that holds the head near the one it started from: a few
    /// labelled cases must adjust the readout, not replace what the whole training split taught it.</summary>
    public float Anchor { get; init; } = 1e-2f;
    /// <summary>Case weights ∝ n_c^−α over the cases' class counts (normalised to a mean of 1): labelled cases
    /// arrive at the clinic's case mix, mostly nv, and an unweighted loss would trade the rare classes the
    /// calibration rebalanced for top-1. 1 weighs every class equally, 0 not at all; ½ is the compromise the
    /// float phase's sampler makes too (full weighting lets a 3-case class swing the readout).</summary>
    public double ClassBalance { get; init; } = 0.5;
    public ulong Seed { get; init; } = 1;
}

/// <summary>
/// Learns a converted model's readout (the dense head producing the logits) from labelled cases, as the
/// device does from clinician feedback: the backbone is fixed, so a case is its int8 head input (the feature
/// map the engine computed) and its label. The head is dequantized (w = s_w·q, b = s_in·s_w·bias), trained
/// in float, and quantized back onto the model's own grids (same weight scheme and granularity, bias on the
/// s_in·s_w grid, logits tensor unchanged), so the result is a <see cref="ReadoutUpdates"/> package that
/// <see cref="ReadoutUpdates.Apply"/> accepts.
/// The loss is the cross-entropy of the device's decision, not of the raw logits: the spiking readout gives
/// p_k = softmax(β·c_k) with c_k = min(T, T·(q_k + 128)/θ_k) and q_k = z_k/s + zp clamped to the int8 range,
/// so the calibrated per-class thresholds θ_k weigh each class's gradient exactly as they weigh its evidence
/// on the device (the floor and the rounding are left out; saturated outputs pass no gradient).
/// Deterministic for a seed. A batch whose loss is NaN or infinite, or a step that leaves the head's weights so, ends
/// <see cref="Learn"/> with a <see cref="TrainingDivergedException"/> naming the pass and batch.
/// </summary>
public sealed class ReadoutLearner
{
    /// <summary>The phase a <see cref="TrainingDivergedException"/> of the learner names.</summary>
    public const string Phase = "readout";
    private readonly ModelPackage _model;
    private readonly Node _head;
    private readonly TensorSpec _in, _out;
    /// <summary>How many learned cases an update carries as golden self-test vectors.</summary>
    public const int GoldenCount = 4;
    private sbyte[][] _goldenInputs = [];
    private readonly int[] _thresholds;
    private readonly int _window;
    private readonly double _beta;
    private readonly Dense _dense;
    private readonly float[] _w0;
    private readonly ReadoutLearnerOptions _o;

    public ReadoutLearner(ModelPackage model, ReadoutLearnerOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        _model = model;
        _o = options ?? new ReadoutLearnerOptions();
        _head = ReadoutUpdates.Head(model);
        _in = model.Graph.Tensors[_head.Inputs[0]];
        _out = model.Graph.Tensors[model.Graph.LogitsTensor];
        var cal = model.Manifest.Calibration;
        Node? readout = model.Graph.Nodes.FirstOrDefault(n => n.Kind == OpKind.SpikingReadout);
        int k = _out.Length;
        _window = readout?.TimeSteps ?? cal.ReadoutWindow;
        _thresholds = readout?.Thresholds ?? (cal.Thresholds.Length == k ? cal.Thresholds : Enumerable.Repeat(_window, k).ToArray());
        // Step weights w_t scale the counts; a constant current spikes evenly, so their mean stands in for them.
        _beta = cal.Beta * (cal.StepWeights.Length == 0 ? 1 : cal.StepWeights.Average());
        int d = _in.Length;
        if (_head.Weights is null || _head.WeightScales is null || _head.Bias is null || _head.Weights.Length != k * d)
            throw new ArgumentException($"model '{model.Manifest.ModelId}': the head has no int8 weights of {k}×{d}", nameof(model));
        _dense = new Dense("readout", d, k);
        for (int o = 0; o < k; o++)
        {
            double sw = WeightScale(o);
            for (int i = 0; i < d; i++) _dense.Weight.Value[i * k + o] = (float)(sw * _head.Weights[o * d + i]);
            _dense.Bias.Value[o] = (float)(_in.Scale * sw * _head.Bias[o]);
        }
        _w0 = (float[])_dense.Weight.Value.Clone();
    }

    public int FeatureLength => _in.Length;

    private double WeightScale(int o) => _head.WeightScales!.Length == 1 ? _head.WeightScales[0] : _head.WeightScales[o];

    /// <summary>
    /// Trains the head on the cases (int8 head inputs, class indices); returns the mean loss of each epoch. Throws
    /// <see cref="TrainingDivergedException"/> when the loss or the weights stop being finite (a learning rate far too
    /// large): the head is then lost and no update must be made from it.
    /// </summary>
    public double[] Learn(IReadOnlyList<sbyte[]> features, IReadOnlyList<int> labels)
    {
        ArgumentNullException.ThrowIfNull(features);
        ArgumentNullException.ThrowIfNull(labels);
        if (features.Count != labels.Count || features.Count == 0) throw new ArgumentException("one label per case, and at least one case");
        _goldenInputs = features.Take(GoldenCount).Select(f => (sbyte[])f.Clone()).ToArray();
        int n = features.Count, d = _in.Length, k = _out.Length, batch = Math.Max(1, _o.BatchSize);
        var x = new Tensor { RequiresGrad = false };
        var opt = new AdamW(_dense.Parameters) { WeightDecay = 0 };
        var tape = new Tape();
        var losses = new double[_o.Epochs];
        var counts = new int[k];
        foreach (int y in labels) if ((uint)y < (uint)k) counts[y]++;
        var classWeight = new double[k];
        for (int c = 0; c < k; c++) classWeight[c] = counts[c] == 0 ? 0 : Math.Pow(counts[c], -_o.ClassBalance);
        double meanWeight = labels.Sum(y => (uint)y < (uint)k ? classWeight[y] : 0) / n;
        for (int c = 0; c < k; c++) classWeight[c] /= meanWeight;
        Span<double> u = stackalloc double[k];
        Span<bool> live = stackalloc bool[k];
        for (int epoch = 0; epoch < _o.Epochs; epoch++)
        {
            var order = Enumerable.Range(0, n).ToArray();
            var rng = SeededRandom.For(_o.Seed, (ulong)epoch, 0x1EA7);
            for (int i = n - 1; i > 0; i--) { int j = rng.NextInt(i + 1); (order[i], order[j]) = (order[j], order[i]); }
            double lossSum = 0;
            for (int start = 0, batchNumber = 1; start < n; start += batch, batchNumber++)
            {
                int m = Math.Min(batch, n - start);
                x.Reshape(m, 1, 1, d);
                for (int r = 0; r < m; r++)
                {
                    var f = features[order[start + r]];
                    if (f.Length != d) throw new ArgumentException($"case {order[start + r]}: {f.Length} features, the head takes {d}");
                    var row = x.Data.AsSpan(r * d, d);
                    for (int j = 0; j < d; j++) row[j] = (float)(_in.Scale * (f[j] - _in.ZeroPoint));
                }
                tape.Training = true;
                var z = _dense.Forward(tape, x);
                for (int r = 0; r < m; r++)
                {
                    int y = labels[order[start + r]];
                    if ((uint)y >= (uint)k) throw new ArgumentException($"label {y} outside 0..{k - 1}");
                    var zr = z.Data.AsSpan(r * k, k);
                    double max = double.NegativeInfinity;
                    for (int c = 0; c < k; c++)
                    {
                        double q = zr[c] / _out.Scale + _out.ZeroPoint;
                        bool inside = q is > -128 and < 127;
                        q = Math.Clamp(q, -128, 127);
                        double count = (double)_window * (q + 128) / _thresholds[c];
                        live[c] = inside && count < _window;
                        u[c] = _beta * Math.Min(_window, count);
                        max = Math.Max(max, u[c]);
                    }
                    double sum = 0;
                    for (int c = 0; c < k; c++) { u[c] = Math.Exp(u[c] - max); sum += u[c]; }
                    var g = z.Grad.AsSpan(r * k, k);
                    for (int c = 0; c < k; c++)
                    {
                        double p = u[c] / sum, target = c == y ? 1 : 0;
                        if (c == y) lossSum -= classWeight[y] * Math.Log(Math.Max(p, 1e-300));
                        g[c] = live[c] ? (float)(classWeight[y] * (p - target) / m * _beta * _window / (_thresholds[c] * _out.Scale)) : 0f;
                    }
                }
                // Every term of the sum is finite and non-negative until one is not, and a NaN or infinity stays in the
                // sum: checking the running sum once per batch finds the batch without changing what is summed.
                if (!double.IsFinite(lossSum)) throw new TrainingDivergedException(Phase, epoch + 1, batchNumber, lossSum);
                tape.Backward();
                var w = _dense.Weight;
                for (int i = 0; i < w.Length; i++) w.Grad[i] += _o.Anchor * (w.Value[i] - _w0[i]);
                opt.Step(_o.LearningRate);
                // The loss reads the logits through the int8 clamp, so weights that overflowed can saturate every output
                // and still give a finite loss; the last step's weights are not read by any loss at all.
                if (!HeadIsFinite()) throw TrainingDivergedException.WeightsNotFinite(Phase, epoch + 1, batchNumber);
            }
            losses[epoch] = lossSum / n;
        }
        return losses;
    }

    private bool HeadIsFinite()
    {
        foreach (float v in _dense.Weight.Value) if (!float.IsFinite(v)) return false;
        foreach (float v in _dense.Bias.Value) if (!float.IsFinite(v)) return false;
        return true;
    }

    /// <summary>
    /// The learned head quantized onto the model's grids, as a readout update for the model. It carries golden
    /// self-test vectors: the first <see cref="GoldenCount"/> head inputs it learned from, with the logits the
    /// reference kernels compute for them through the update's own graph. A device refuses an update without
    /// them, since they are how it checks, before swapping, that it runs the update as it was made.
    /// </summary>
    public ModelPackage CreateUpdate(string version, IReadOnlyDictionary<string, double>? metrics = null)
    {
        // Learn stops at the first step that leaves a weight NaN or infinite; this keeps a caller that went on after
        // that from quantizing them (a NaN converts to an arbitrary int8 weight and int32 bias).
        if (!HeadIsFinite()) throw new InvalidOperationException("the learned head's weights are not finite (Learn diverged): no update can be made from them");
        int d = _in.Length, k = _out.Length;
        var scheme = new QuantScheme(_model.Manifest.Profile);
        bool perChannel = _head.WeightScales!.Length != 1;
        var scales = new double[perChannel ? k : 1];
        var maxAbs = new double[k];
        for (int o = 0; o < k; o++)
            for (int i = 0; i < d; i++) maxAbs[o] = Math.Max(maxAbs[o], Math.Abs(_dense.Weight.Value[i * k + o]));
        if (perChannel) for (int o = 0; o < k; o++) scales[o] = scheme.WeightScale(maxAbs[o], firstLayer: false);
        else scales[0] = scheme.WeightScale(maxAbs.Max(), firstLayer: false);
        int qMin = scheme.WeightQMin(false), qMax = scheme.WeightQMax(false);
        var weights = new sbyte[k * d];
        var bias = new int[k];
        for (int o = 0; o < k; o++)
        {
            double s = scales[perChannel ? o : 0];
            for (int i = 0; i < d; i++)
                weights[o * d + i] = (sbyte)Math.Clamp(Math.Round(_dense.Weight.Value[i * k + o] / s, MidpointRounding.AwayFromZero), qMin, qMax);
            bias[o] = (int)Math.Clamp(Math.Round(_dense.Bias.Value[o] / (_in.Scale * s), MidpointRounding.AwayFromZero), int.MinValue, int.MaxValue);
        }
        ModelPackage plain = ReadoutUpdates.Create(_model, version, weights, scales, bias, metrics: metrics);
        if (_goldenInputs.Length == 0) return plain;
        return ReadoutUpdates.Create(_model, version, weights, scales, bias, metrics: metrics, golden: GoldenVectors.Record(plain, _goldenInputs));
    }
}
