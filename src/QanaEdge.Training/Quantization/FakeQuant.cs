using QanaEdge.Runtime;
using QanaEdge.Training.Engine;

namespace QanaEdge.Training.Quantization;

/// <summary>
/// Rounding and clamping exactly as the integer engine requantizes: q = clamp(zp + round(x / s), lo, hi)
/// with ONE rounding, half away from zero (never banker's rounding).
/// </summary>
public static class QuantMath
{
    public static int Quantize(double x, double scale, int zeroPoint, int qmin, int qmax) =>
        (int)Math.Clamp(zeroPoint + Math.Round(x / scale, MidpointRounding.AwayFromZero), qmin, qmax);

    public static float FakeQuantize(float x, float scale, int zeroPoint, int qmin, int qmax)
    {
        float q = MathF.Round(x / scale, MidpointRounding.AwayFromZero) + zeroPoint;
        q = Math.Clamp(q, qmin, qmax);
        return scale * (q - zeroPoint);
    }
}

/// <summary>
/// Fake quantization of an activation tensor with a straight-through estimator: forward rounds and
/// clamps to the tensor's integer grid; backward passes the gradient unchanged inside the representable
/// range and blocks it outside (where the clamp saturates). In observe mode it records the value range
/// instead (calibration) and passes values through.
/// </summary>
public sealed class FakeQuant : Layer
{
    public Tensor Output { get; } = new();
    public float Scale { get; set; } = 1f;
    public int ZeroPoint { get; set; }
    public int QMin { get; set; } = sbyte.MinValue;
    public int QMax { get; set; } = sbyte.MaxValue;
    /// <summary>Record min/max instead of quantizing (calibration pass).</summary>
    public bool Observe { get; set; }
    public float ObservedMin { get; private set; } = float.PositiveInfinity;
    public float ObservedMax { get; private set; } = float.NegativeInfinity;
    /// <summary>Off: identity (float network with the same structure), apart from the real clamp.</summary>
    public bool Enabled { get; set; } = true;
    /// <summary>The producer's fused activation in real terms (ReLU6: [0, 6]); applied in observe and disabled
    /// modes too, so that calibration sees the clamped values the integer graph produces.</summary>
    public float ClampLo { get; set; } = float.NegativeInfinity;
    public float ClampHi { get; set; } = float.PositiveInfinity;
    /// <summary>
    /// When the input is a convolution's or dense layer's output with quantized weights and input, the engine
    /// does not compute round(x / s): it holds the integer accumulator acc = x / (s_in·s_w[c]) and applies the
    /// Q31 multiplier M_c ≈ s_in·s_w[c] / s (<see cref="Requant"/>). Exact rounding ties are frequent under
    /// akd1000's power-of-two scales (and with the 1/255 input scale), and there the rounded multiplier, not
    /// the real one, decides; so the accumulator is recovered from x and requantized the engine's way.
    /// Null: plain rounding of x / s.
    /// </summary>
    public AccumulatorRequant? Accumulator { get; set; }
    private Tensor _x = null!;

    public FakeQuant(string name) : base(name) { }

    public Tensor Forward(Tape tape, Tensor x)
    {
        _x = x;
        Output.Reshape(x.N, x.H, x.W, x.C);
        Tape.Prepare(Output, tape.Training);
        int len = x.Length;
        if (Observe || !Enabled)
        {
            var ys = Output.Data.AsSpan(0, len);
            System.Numerics.Tensors.TensorPrimitives.Max(x.Data.AsSpan(0, len), ClampLo, ys);
            System.Numerics.Tensors.TensorPrimitives.Min(ys, ClampHi, ys);
            if (Observe)
            {
                ObservedMin = Math.Min(ObservedMin, System.Numerics.Tensors.TensorPrimitives.Min(ys));
                ObservedMax = Math.Max(ObservedMax, System.Numerics.Tensors.TensorPrimitives.Max(ys));
            }
        }
        else
        {
            float s = Scale; int zp = ZeroPoint, lo = QMin, hi = QMax;
            var acc = Accumulator;
            if (acc is not null && acc.Scales.Length != x.C) throw new InvalidOperationException($"{Name}: {acc.Scales.Length} accumulator scales for {x.C} channels");
            Par.For(x.N, (chunk, st, e) =>
            {
                int ps = x.PerSample, c = x.C;
                var xs = x.Data.AsSpan(st * ps, (e - st) * ps);
                var ys = Output.Data.AsSpan(st * ps, (e - st) * ps);
                if (acc is null)
                    for (int i = 0; i < xs.Length; i++) ys[i] = QuantMath.FakeQuantize(xs[i], s, zp, lo, hi);
                else
                    for (int i = 0; i < xs.Length; i++)
                    {
                        int k = i % c;
                        double a = Math.Round(xs[i] / acc.Scales[k]);
                        int q = Requant.Apply((int)Math.Clamp(a, int.MinValue, int.MaxValue), acc.Multipliers[k], zp, lo, hi);
                        ys[i] = s * (q - zp);
                    }
            });
        }
        tape.Record(this);
        return Output;
    }

    public override void Backward()
    {
        if (!_x.RequiresGrad) return;
        int len = Output.Length;
        if (Observe || !Enabled) { Activation.MaskedAdd(_x.Grad.AsSpan(0, len), Output.Grad.AsSpan(0, len), _x.Data.AsSpan(0, len), ClampLo, ClampHi); return; }
        // Representable range [s(qmin − zp) − s/2, s(qmax − zp) + s/2]: inside it the rounding is treated as identity.
        float lo = Scale * (QMin - ZeroPoint - 0.5f), hi = Scale * (QMax - ZeroPoint + 0.5f);
        Activation.MaskedAdd(_x.Grad.AsSpan(0, len), Output.Grad.AsSpan(0, len), _x.Data.AsSpan(0, len), lo, hi);
    }

    public void ResetObserved() { ObservedMin = float.PositiveInfinity; ObservedMax = float.NegativeInfinity; }
}

/// <summary>Per output channel: the real step of the integer accumulator (s_in·s_w[c]) and the engine's
/// multiplier from it to the output grid.</summary>
public sealed record AccumulatorRequant(double[] Scales, QuantizedMultiplier[] Multipliers);
