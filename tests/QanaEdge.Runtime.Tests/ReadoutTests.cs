using QanaEdge.Runtime;

namespace QanaEdge.Runtime.Tests;

public class ReadoutTests
{
    [Fact]
    public void Closed_form_equals_stepped_simulation()
    {
        var logits = new sbyte[256];
        for (int i = 0; i < 256; i++) logits[i] = (sbyte)(i - 128);
        var thresholds = new int[256];
        var a = new int[256];
        var b = new int[256];
        foreach (int theta in new[] { 1, 2, 3, 7, 64, 100, 255, 256, 257, 1000 })
        foreach (int T in new[] { 1, 2, 5, 16, 31, 64, 200 })
        {
            Array.Fill(thresholds, theta);
            SpikingReadout.Simulate(logits, thresholds, T, a);
            SpikingReadout.ClosedForm(logits, thresholds, T, b);
            Assert.Equal(a, b);
        }
    }

    [Fact]
    public void Counts_follow_the_integrate_and_fire_rule()
    {
        // d = 100 + 128 = 228, θ = 100, T = 4: u = 228 → spike (128), 356 → spike (256), 484 → spike... one per step.
        var c = new int[2];
        SpikingReadout.Simulate([(sbyte)100, (sbyte)-128], [100, 5], 4, c);
        Assert.Equal([4, 0], c);
        // d = 10 + 128 = 138, θ = 300, T = 10: ⌊1380/300⌋ = 4.
        SpikingReadout.Simulate([(sbyte)10, (sbyte)-118], [300, 7], 10, c);
        Assert.Equal([4, 10], c);
    }

    [Fact]
    public void Tends_to_softmax_of_the_logits_as_T_grows()
    {
        sbyte[] logits = [10, -20, 40, 0, 5, -60, 30];
        double sLogit = 0.05;
        int theta = 256;                    // above every d = q + 128: no saturation at one spike per step
        var thresholds = Enumerable.Repeat(theta, 7).ToArray();
        var exact = new double[7];
        double max = logits.Max(v => (int)v);
        double sum = logits.Sum(v => Math.Exp(sLogit * (v - max)));
        for (int k = 0; k < 7; k++) exact[k] = Math.Exp(sLogit * (logits[k] - max)) / sum;
        double previous = double.MaxValue;
        foreach (int T in new[] { 16, 128, 1024, 8192 })
        {
            var p = new float[7];
            // β per unit count = s_logit·θ/T·... counts ≈ T·d/θ, so β = s_logit·θ/T makes β·c ≈ s_logit·d.
            SpikingReadout.Probabilities(logits, thresholds, T, sLogit * theta / T, [], p);
            double err = Enumerable.Range(0, 7).Max(k => Math.Abs(p[k] - exact[k]));
            Assert.True(err <= previous + 1e-9, $"T={T}: error {err} grew from {previous}");
            previous = err;
        }
        Assert.True(previous < 0.01, $"error {previous}");
    }

    [Fact]
    public void Step_weights_weight_each_spike()
    {
        sbyte[] logits = [-28, -128];            // d = 100 and 0
        int[] thresholds = [150, 10];
        double[] w = [1, 2, 4, 8];
        // u: 100, 200→spike(50) at t=2, 150→spike(0) at t=3, 100: spikes at t = 2, 3 → weights 2 + 4.
        var p = new float[2];
        SpikingReadout.Probabilities(logits, thresholds, 4, 1.0, w, p);
        double z0 = 6.0, z1 = 0.0;
        Assert.Equal(Math.Exp(z0) / (Math.Exp(z0) + Math.Exp(z1)), p[0], 5);
        Assert.Throws<ArgumentException>(() => SpikingReadout.Probabilities(logits, thresholds, 3, 1.0, w, p));
    }
}
