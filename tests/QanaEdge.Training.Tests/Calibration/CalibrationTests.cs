using QanaEdge.Training.Calibration;
using QanaEdge.Training.Data;
using QanaEdge.Training.Evaluation;

namespace QanaEdge.Training.Tests.Calibration;

public class CalibrationTests
{
    /// <summary>A probability row with the given malignancy mass on mel and the rest on nv.</summary>
    private static float[] Row(float malignant) => [0, 0, 0, 0, malignant, 1 - malignant, 0];

    [Fact]
    public void Referral_threshold_is_the_highest_meeting_the_target_sensitivity()
    {
        // Ten malignant (mel) cases with scores 0.1..1.0 and five benign (nv) cases.
        var truth = Enumerable.Repeat(4, 10).Concat(Enumerable.Repeat(5, 5)).ToArray();
        var scores = new[] { 0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f, 0.7f, 0.8f, 0.9f, 1.0f, 0.05f, 0.15f, 0.25f, 0.35f, 0.95f };
        var probs = scores.Select(Row).ToArray();
        var fit = ReferralCalibration.Fit(truth, probs, confidenceZ: 0);
        // Point estimate: 90% of 10 = 9 cases must be referred: the 9th highest malignant score is 0.2.
        Assert.Equal(0.2f, (float)fit.Threshold, 6);
        Assert.Equal(0.9, fit.Sensitivity, 12);
        Assert.Equal(2.0 / 5, fit.Specificity, 12); // 0.25, 0.35, 0.95 are referred: 2 of 5 benign kept
        Assert.Equal(1.0, ReferralCalibration.Fit(truth, probs, 1.0, confidenceZ: 0).Sensitivity);
        Assert.Throws<ArgumentException>(() => ReferralCalibration.Fit([5], [Row(0.3f)]));
        // With a 95 % confidence bound ten cases cannot show 90 %: even 10 of 10 has a lower bound of 0.79, so
        // every malignant case is referred.
        var bounded = ReferralCalibration.Fit(truth, probs);
        Assert.Equal(0.1f, (float)bounded.Threshold, 6);
        Assert.Equal(1.0, bounded.Sensitivity);
        Assert.Equal(0.787, bounded.SensitivityLowerBound, 3);
    }

    [Fact]
    public void Wilson_lower_bound_matches_the_textbook_interval()
    {
        // 8 of 10 at 95 % two-sided (z = 1.96): Wilson's interval is [0.490, 0.943].
        Assert.Equal(0.4902, ReferralCalibration.WilsonLowerBound(8, 10, 1.959963984540054), 4);
        Assert.Equal(0.8, ReferralCalibration.WilsonLowerBound(8, 10, 0), 12);
        Assert.Equal(0.0, ReferralCalibration.WilsonLowerBound(0, 10, 1.96), 12);
        Assert.Throws<ArgumentOutOfRangeException>(() => ReferralCalibration.WilsonLowerBound(11, 10, 1.96));
    }

    /// <summary>
    /// The default fit keeps 90 % sensitivity with 95 % confidence: its Wilson bound reaches 0.9, and the next
    /// threshold up (one malignant case fewer referred) would not. On 148 malignant cases (the validation split's
    /// count) that means 140 referred, 94.6 %.
    /// </summary>
    [Fact]
    public void Referral_fit_with_confidence_refers_enough_for_the_bound()
    {
        var truth = Enumerable.Repeat(4, 148).Concat(Enumerable.Repeat(5, 100)).ToArray();
        var probs = Enumerable.Range(0, 148).Select(i => Row(0.3f + 0.7f * i / 148)).Concat(Enumerable.Range(0, 100).Select(i => Row(0.5f * i / 100))).ToArray();
        var fit = ReferralCalibration.Fit(truth, probs);
        Assert.Equal(140.0 / 148, fit.Sensitivity, 12);
        Assert.True(fit.SensitivityLowerBound >= 0.9);
        Assert.True(ReferralCalibration.WilsonLowerBound(139, 148, ReferralCalibration.DefaultConfidenceZ) < 0.9);
        var above = ReferralMetrics.Compute(truth, probs, Math.BitIncrement(fit.Threshold));
        Assert.Equal(139.0 / 148, above.Sensitivity, 12);
    }

    [Fact]
    public void Referral_fit_reaches_the_target_on_random_scores()
    {
        var rng = new SeededRandom(4);
        int n = 501;
        var truth = new int[n]; var probs = new float[n][];
        for (int i = 0; i < n; i++)
        {
            truth[i] = rng.NextInt(7);
            bool mal = ReferralMetrics.IsMalignant(truth[i]);
            probs[i] = Row((float)Math.Clamp(rng.NextDouble() * 0.7 + (mal ? 0.25 : 0), 0, 1));
        }
        var fit = ReferralCalibration.Fit(truth, probs, confidenceZ: 0);
        Assert.True(fit.Sensitivity >= 0.9);
        // One step higher would lose the target: the threshold is tight.
        var above = ReferralMetrics.Compute(truth, probs, Math.BitIncrement(fit.Threshold));
        Assert.True(above.Sensitivity < 0.9);
    }

    [Fact]
    public void Tiling_tau_is_chosen_where_tiling_helps_within_the_budget()
    {
        // Two classes. Confident plain predictions are right; unconfident ones (top < 0.6) are wrong and the
        // tiled evaluation fixes them.
        var truth = new List<int>(); var plain = new List<float[]>(); var tiled = new List<float[]>();
        for (int i = 0; i < 16; i++) { truth.Add(i % 2); var p = i % 2 == 0 ? new[] { 0.9f, 0.1f } : new[] { 0.2f, 0.8f }; plain.Add(p); tiled.Add(p); }
        for (int i = 0; i < 4; i++) { truth.Add(0); plain.Add([0.45f, 0.55f]); tiled.Add([0.7f, 0.3f]); }
        var fit = TilingCalibration.Fit(truth.ToArray(), plain.ToArray(), tiled.ToArray(), maxTriggerRate: 0.25);
        Assert.Equal(4.0 / 20, fit.TriggerRate, 12);
        Assert.Equal(1.0, fit.MacroF1WithTiling, 12);
        Assert.True(fit.MacroF1Plain < 1.0);
        Assert.True(fit.Tau > 0.55 && fit.Tau < 0.8);
        // With no budget, tiling never fires.
        var none = TilingCalibration.Fit(truth.ToArray(), plain.ToArray(), tiled.ToArray(), maxTriggerRate: 0.1);
        Assert.Equal(0.0, none.Tau);
        Assert.Equal(0.0, none.TriggerRate);
    }

    [Fact]
    public void Class_thresholds_rebalance_an_under_called_class()
    {
        // Class 1 cases have logits only slightly below class 0's: equal thresholds call them all class 0.
        var truth = new List<int>(); var logits = new List<sbyte[]>();
        var rng = new SeededRandom(8);
        for (int i = 0; i < 60; i++) { truth.Add(0); logits.Add([(sbyte)(40 + rng.NextInt(20)), (sbyte)(-20 + rng.NextInt(20)), -100]); }
        for (int i = 0; i < 20; i++) { truth.Add(1); logits.Add([(sbyte)(20 + rng.NextInt(10)), (sbyte)(5 + rng.NextInt(10)), -100]); }
        for (int i = 0; i < 20; i++) { truth.Add(2); logits.Add([-50, -60, (sbyte)(30 + rng.NextInt(20))]); }
        const int window = 32, theta = 256;   // above every current: no neuron saturates, so no ties
        var fit = ClassThresholdCalibration.Fit(truth.ToArray(), logits.ToArray(), window, theta, beta: 0.5);
        Assert.True(fit.ObjectiveAfter > fit.ObjectiveBefore + 0.1, $"{fit.ObjectiveBefore} -> {fit.ObjectiveAfter}");
        Assert.True(fit.Thresholds[1] < fit.Thresholds[0], string.Join(",", fit.Thresholds));
        Assert.All(fit.Thresholds, t => Assert.InRange(t, theta / 2, theta * 2));
        // The figure reported is what the readout with those thresholds really gives, decided as the device decides.
        var probs = logits.Select(l => { var p = new float[3]; QanaEdge.Runtime.SpikingReadout.Probabilities(l, fit.Thresholds, window, 0.5, [], p); return p; }).ToArray();
        var decisions = probs.Select((p, i) => QanaEdge.Runtime.SpikingReadout.Decide(p, logits[i])).ToArray();
        Assert.Equal(fit.ObjectiveAfter, ClassificationMetrics.Compute(truth.ToArray(), probs, decisions).MacroF1, 12);
        // Deterministic.
        Assert.Equal(fit.Thresholds, ClassThresholdCalibration.Fit(truth.ToArray(), logits.ToArray(), window, theta, 0.5).Thresholds);
    }

    [Fact]
    public void Class_threshold_fit_scores_ties_as_the_device_breaks_them()
    {
        // Both classes' currents exceed θ, so both neurons fire every step: equal counts, equal probabilities.
        // The device names the higher logit (class 1); the first maximum would name class 0 and score 0.
        var truth = new[] { 1, 1, 1, 1 };
        var logits = new sbyte[][] { [40, 60], [40, 60], [10, 30], [0, 1] };
        var p = new float[2];
        QanaEdge.Runtime.SpikingReadout.Probabilities(logits[0], [120, 120], 8, 0.5, [], p);
        Assert.Equal(p[0], p[1]);
        var fit = ClassThresholdCalibration.Fit(truth, logits, window: 8, baseThreshold: 120, beta: 0.5);
        Assert.Equal(1.0, fit.Top1Before, 12);
    }

    [Fact]
    public void Cross_checked_thresholds_keep_a_real_rebalancing_and_refuse_noise()
    {
        // Signal: class 1 is under-called in every lesion; each half of the split teaches the other half the same fix.
        var rng = new SeededRandom(9);
        var truth = new List<int>(); var logits = new List<sbyte[]>(); var groups = new List<string>();
        for (int i = 0; i < 120; i++) { truth.Add(0); logits.Add([(sbyte)(40 + rng.NextInt(20)), (sbyte)(-20 + rng.NextInt(20)), -100]); groups.Add($"a{i / 2}"); }
        for (int i = 0; i < 40; i++) { truth.Add(1); logits.Add([(sbyte)(20 + rng.NextInt(10)), (sbyte)(5 + rng.NextInt(10)), -100]); groups.Add($"b{i / 2}"); }
        for (int i = 0; i < 40; i++) { truth.Add(2); logits.Add([-50, -60, (sbyte)(30 + rng.NextInt(20))]); groups.Add($"c{i / 2}"); }
        const int window = 32, theta = 256;   // above every current: no neuron saturates, so no ties
        var fit = ClassThresholdCalibration.FitCrossChecked(truth.ToArray(), logits.ToArray(), groups.ToArray(), window, theta, beta: 0.5);
        Assert.True(fit.Accepted, string.Join(", ", fit.HeldOutGains));
        Assert.All(fit.HeldOutGains, g => Assert.True(g > 0.1, $"held-out gain {g}"));
        Assert.Equal(ClassThresholdCalibration.Fit(truth.ToArray(), logits.ToArray(), window, theta, 0.5).Thresholds, fit.Thresholds);

        // Noise: labels independent of the logits. Whatever the search finds on one half does not carry to the other.
        var noiseTruth = Enumerable.Range(0, 200).Select(_ => rng.NextInt(3)).ToArray();
        var noiseLogits = Enumerable.Range(0, 200).Select(_ => new[] { (sbyte)rng.NextInt(40), (sbyte)rng.NextInt(40), (sbyte)rng.NextInt(40) }).ToArray();
        var noiseGroups = Enumerable.Range(0, 200).Select(i => $"n{i}").ToArray();
        var refused = ClassThresholdCalibration.FitCrossChecked(noiseTruth, noiseLogits, noiseGroups, window, theta, beta: 0.5);
        Assert.False(refused.Accepted, string.Join(", ", refused.HeldOutGains));
        Assert.All(refused.Thresholds, t => Assert.Equal(theta, t));
        Assert.Equal(refused.ObjectiveBefore, refused.ObjectiveAfter);
    }

    [Fact]
    public void Threshold_halves_keep_each_lesion_on_one_side_and_split_each_class()
    {
        int[] truth = [0, 0, 0, 0, 1, 1, 1, 1, 0, 1];
        string[] groups = ["l1", "l1", "l2", "l3", "l4", "l5", "l5", "l6", "l7", "l8"];
        int[] fold = ClassThresholdCalibration.Halves(truth, groups);
        for (int i = 0; i < truth.Length; i++)
            for (int j = 0; j < truth.Length; j++)
                if (groups[i] == groups[j]) Assert.Equal(fold[i], fold[j]);
        foreach (int c in new[] { 0, 1 })
        {
            var lesionsOfClass = groups.Where((g, i) => truth[i] == c).Distinct().Select(g => fold[Array.IndexOf(groups, g)]).ToArray();
            Assert.Contains(0, lesionsOfClass);
            Assert.Contains(1, lesionsOfClass);
        }
    }
}
