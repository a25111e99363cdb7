using QanaEdge.Training.Engine;

namespace QanaEdge.Training.Tests.Engine;

/// <summary>
/// Finite-difference gradient checks for every op. The loss is L = Σ r·y with a fixed random r, accumulated
/// in float64; central differences with h = 1e-2 on float32 values, compared normwise
/// (‖analytic − numeric‖ ≤ 2e-2·‖numeric‖) and on the largest entries. Inputs are kept away from the kinks
/// of ReLU/ReLU6 so the function is smooth where it is probed.
/// </summary>
public class GradientCheckTests
{
    private static Tensor Random(int n, int h, int w, int c, ulong seed, float lo = -1, float hi = 1, bool avoidKinks = false)
    {
        var t = new Tensor(n, h, w, c);
        var rng = new Rng(seed);
        for (int i = 0; i < t.Length; i++)
        {
            float v = lo + (hi - lo) * rng.NextFloat();
            if (avoidKinks) { v = MathF.Abs(v) < 0.1f ? v + 0.2f : v; if (MathF.Abs(v - 6) < 0.1f) v += 0.3f; }
            t.Data[i] = v;
        }
        t.ZeroGrad();
        return t;
    }

    private static void Fill(Parameter p, ulong seed, float scale = 0.5f)
    {
        var rng = new Rng(seed);
        for (int i = 0; i < p.Length; i++) p.Value[i] = (float)(rng.NextGaussian() * scale);
    }

    /// <summary>Checks d(Σ r·y)/d(every input and parameter element).</summary>
    private static void Check(Func<Tape, Tensor> forward, Tensor[] inputs, Parameter[] parameters, double tol = 2e-2)
    {
        var y = forward(new Tape { Training = true });
        var r = new float[y.Length];
        var rng = new Rng(99);
        for (int i = 0; i < r.Length; i++) r[i] = rng.NextFloat() * 2 - 1;
        foreach (var x in inputs) x.ZeroGrad();
        foreach (var p in parameters) p.ZeroGrad();
        var tape = new Tape { Training = true };
        y = forward(tape);
        r.CopyTo(y.Grad, 0);
        tape.Backward();
        var analytic = inputs.Select(x => x.Grad.AsSpan(0, x.Length).ToArray()).Concat(parameters.Select(p => (float[])p.Grad.Clone())).ToList();

        double Loss()
        {
            var t = new Tape { Training = true };
            var o = forward(t);
            double s = 0;
            for (int i = 0; i < o.Length; i++) s += (double)r[i] * o.Data[i];
            return s;
        }
        var targets = inputs.Select(x => x.Data).Concat(parameters.Select(p => p.Value)).ToList();
        var lengths = inputs.Select(x => x.Length).Concat(parameters.Select(p => p.Length)).ToList();
        for (int k = 0; k < targets.Count; k++)
        {
            var data = targets[k];
            int len = lengths[k];
            // Probe at most 64 elements spread over the tensor (the tensors here are small).
            int stride = Math.Max(1, len / 64);
            double num2 = 0, diff2 = 0;
            for (int i = 0; i < len; i += stride)
            {
                float old = data[i];
                const float h = 1e-2f;
                data[i] = old + h; double lp = Loss();
                data[i] = old - h; double lm = Loss();
                data[i] = old;
                double numeric = (lp - lm) / (2 * h);
                double a = analytic[k][i];
                num2 += numeric * numeric; diff2 += (a - numeric) * (a - numeric);
            }
            Assert.True(num2 > 0, $"operand {k}: the gradient is identically zero where probed");
            Assert.True(Math.Sqrt(diff2) <= tol * Math.Sqrt(num2), $"operand {k}: relative error {Math.Sqrt(diff2 / num2):G3}");
        }
    }

    [Theory]
    [InlineData(3, 1, false)]
    [InlineData(3, 2, true)]
    [InlineData(1, 1, true)]
    [InlineData(1, 2, false)]
    public void Conv2d(int k, int stride, bool bias)
    {
        var x = Random(2, 7, 6, 5, 1);
        var conv = new Conv2d("c", 5, 9, k, stride, bias);
        Fill(conv.Weight, 2);
        if (conv.Bias is not null) Fill(conv.Bias, 3);
        Check(t => conv.Forward(t, x), [x], conv.Parameters.ToArray());
    }

    [Theory]
    [InlineData(1, true)]
    [InlineData(2, false)]
    public void DepthwiseConv2d(int stride, bool bias)
    {
        var x = Random(2, 7, 8, 12, 4);
        var dw = new DepthwiseConv2d("d", 12, 3, stride, bias);
        Fill(dw.Weight, 5);
        if (dw.Bias is not null) Fill(dw.Bias, 6);
        Check(t => dw.Forward(t, x), [x], dw.Parameters.ToArray());
    }

    [Fact]
    public void Dense()
    {
        var x = Random(3, 2, 2, 5, 7);
        var d = new Dense("fc", 20, 11);
        Fill(d.Weight, 8); Fill(d.Bias, 9);
        Check(t => d.Forward(t, x), [x], d.Parameters.ToArray());
    }

    [Fact]
    public void BatchNormTraining()
    {
        var x = Random(3, 4, 3, 10, 10, -2, 3);
        var bn = new BatchNorm("bn", 10);
        Fill(bn.Gamma, 11); Fill(bn.Beta, 12);
        Check(t => bn.Forward(t, x), [x], bn.Parameters.ToArray());
    }

    [Fact]
    public void BatchNormEvaluationUsesRunningStatistics()
    {
        var x = Random(2, 3, 3, 4, 13);
        var bn = new BatchNorm("bn", 4);
        Fill(bn.Gamma, 14); Fill(bn.Beta, 15);
        for (int c = 0; c < 4; c++) { bn.RunningMean[c] = 0.1f * c; bn.RunningVar[c] = 1 + c; }
        var y = bn.Forward(new Tape { Training = false }, x);
        for (int i = 0; i < x.Length; i++)
        {
            int c = i % 4;
            float expected = bn.Gamma.Value[c] * (x.Data[i] - bn.RunningMean[c]) / MathF.Sqrt(bn.RunningVar[c] + bn.Epsilon) + bn.Beta.Value[c];
            Assert.Equal(expected, y.Data[i], 5);
        }
    }

    [Theory]
    [InlineData(ActivationKind.Relu)]
    [InlineData(ActivationKind.Relu6)]
    [InlineData(ActivationKind.Sigmoid)]
    public void Activations(ActivationKind kind)
    {
        var x = Random(2, 3, 3, 8, 16, -3, 8, avoidKinks: true);
        var a = new Activation("a", kind);
        Check(t => a.Forward(t, x), [x], []);
    }

    [Fact]
    public void AddAndConcat()
    {
        var a = Random(2, 3, 4, 6, 17); var b = Random(2, 3, 4, 6, 18); var c = Random(2, 3, 4, 5, 19);
        var add = new Add("add"); var cat = new Concat("cat");
        Check(t => cat.Forward(t, add.Forward(t, a, b), c), [a, b, c], []);
    }

    [Theory]
    [InlineData(3, 3, 6)]  // full [H,W,C]
    [InlineData(1, 1, 6)]  // channel [1,1,C]
    [InlineData(3, 3, 1)]  // spatial [H,W,1]
    public void MulWithBroadcast(int gh, int gw, int gc)
    {
        var x = Random(2, 3, 3, 6, 20); var g = Random(2, gh, gw, gc, 21);
        var mul = new Mul("mul");
        Check(t => mul.Forward(t, x, g), [x, g], []);
    }

    [Fact]
    public void GlobalAvgPoolAndFlatten()
    {
        var x = Random(2, 4, 3, 5, 22);
        var gap = new GlobalAvgPool("gap"); var flat = new Flatten("flat"); var d = new Dense("fc", 5, 3);
        Fill(d.Weight, 23); Fill(d.Bias, 24);
        Check(t => d.Forward(t, flat.Forward(t, gap.Forward(t, x))), [x], d.Parameters.ToArray());
    }

    [Fact]
    public void DropoutUsesOneMaskPerStep()
    {
        var x = Random(2, 4, 4, 8, 25);
        var drop = new Dropout("drop", 0.3f, 7);
        // Same step ⇒ same mask, so the layer is linear in x and the check applies.
        Check(t => { t.Step = 5; return drop.Forward(t, x); }, [x], []);
        var y = drop.Forward(new Tape { Training = true, Step = 5 }, x);
        int zeros = 0;
        for (int i = 0; i < y.Length; i++) if (y.Data[i] == 0) zeros++;
        Assert.InRange(zeros, y.Length / 10, y.Length / 2);
        var eval = drop.Forward(new Tape { Training = false }, x);
        Assert.Equal(x.Data.AsSpan(0, x.Length).ToArray(), eval.Data.AsSpan(0, x.Length).ToArray());
    }

    [Fact]
    public void SoftmaxCrossEntropyWithWeightsAndSmoothing() =>
        CheckLoss(new SoftmaxCrossEntropy { ClassWeights = [1, 2, 0.5f, 3, 1, 1, 2], LabelSmoothing = 0.1f });

    [Fact]
    public void SoftmaxCrossEntropyWithLogitOffsets()
    {
        float[] offsets = [-2.1f, -1.6f, -0.9f, -3.0f, -0.5f, -0.2f, -2.8f];
        var adjusted = new SoftmaxCrossEntropy { LogitOffsets = offsets, LabelSmoothing = 0.1f };
        CheckLoss(adjusted);
        // The offsets act exactly like a bias on the logits: same loss as the plain loss of z + b.
        var z = Random(4, 1, 1, 7, 27, -2, 2);
        var shifted = Random(4, 1, 1, 7, 27, -2, 2);
        for (int i = 0; i < shifted.Length; i++) shifted.Data[i] += offsets[i % 7];
        int[] labels = [1, 0, 5, 3];
        Assert.Equal(new SoftmaxCrossEntropy { LabelSmoothing = 0.1f }.Forward(shifted, labels), adjusted.Forward(z, labels), 6);
    }

    [Fact]
    public void SoftmaxCrossEntropyOfAMixedBatch()
    {
        var loss = new SoftmaxCrossEntropy { ClassWeights = [1, 2, 0.5f, 3, 1, 1, 2], LabelSmoothing = 0.1f };
        int[] labels = [0, 3, 6, 2], mixed = [3, 3, 1, 5];
        CheckLoss((z, y) => loss.Forward(z, y, mixed, 0.3f));
        // λ = 0 is the plain loss, bit for bit; λ = 1 is the plain loss of the other labels.
        var z = Random(4, 1, 1, 7, 28, -2, 2);
        Assert.Equal(loss.Forward(z, labels), loss.Forward(z, labels, mixed, 0f));
        Assert.Equal(loss.Forward(z, mixed), loss.Forward(z, labels, mixed, 1f), 5);
    }

    private static void CheckLoss(SoftmaxCrossEntropy loss) => CheckLoss((z, y) => loss.Forward(z, y));

    /// <summary>Central differences of the loss against the gradient it writes into z.Grad.</summary>
    private static void CheckLoss(Func<Tensor, int[], float> loss)
    {
        var z = Random(4, 1, 1, 7, 26, -2, 2);
        int[] labels = [0, 3, 6, 2];
        loss(z, labels);
        var analytic = z.Grad.AsSpan(0, z.Length).ToArray();
        for (int i = 0; i < z.Length; i++)
        {
            float old = z.Data[i];
            z.Data[i] = old + 1e-2f; double lp = loss(z, labels);
            z.Data[i] = old - 1e-2f; double lm = loss(z, labels);
            z.Data[i] = old;
            Assert.True(Math.Abs((lp - lm) / 2e-2 - analytic[i]) <= 1e-3 + 1e-2 * Math.Abs(analytic[i]), $"logit {i}");
        }
    }
}
