using QanaEdge.Runtime;
using QanaEdge.Training.Evaluation;

namespace QanaEdge.Training.Calibration;

/// <summary>What the per-class threshold search optimises on the validation split.</summary>
public enum CalibrationObjective { MacroF1, BalancedAccuracy }

/// <summary>Per-class IF thresholds and the validation figures before and after.</summary>
public sealed record ClassThresholdFit(int[] Thresholds, double ObjectiveBefore, double ObjectiveAfter,
    double Top1Before, double Top1After);

/// <summary>
/// Per-class readout thresholds that rebalance decisions (our reading of the paper's eq. 18). In the IF
/// readout the count of class k is c_k = min(T, ⌊T·d_k/θ_k⌋) with d_k = q_k + 128, so θ_k acts as an inverse
/// gain on class k's evidence: a rare class that the network under-calls gets a lower threshold, a dominant
/// class a higher one. Starting from the common threshold θ, a coordinate ascent visits each class in turn
/// and tries θ_k = round(θ·2^(j/8)), j = −8..8 (a factor of 2 either way), keeping the value that maximises
/// the objective (macro-F1 by default) of the readout's decisions on the validation logits, until a full
/// pass changes nothing (at most 6 passes). Ties keep the current value, so thresholds move only when
/// the validation figure strictly improves. The decision simulated is the device's: probabilities from
/// <see cref="SpikingReadout.Probabilities"/>, then the first maximum.
/// </summary>
public static class ClassThresholdCalibration
{
    public static ClassThresholdFit Fit(int[] truth, sbyte[][] logits, int window, int baseThreshold, double beta,
        CalibrationObjective objective = CalibrationObjective.MacroF1, double[]? stepWeights = null)
    {
        if (truth.Length != logits.Length || truth.Length == 0) throw new ArgumentException("truth and logits must be non-empty and of equal length");
        if (baseThreshold <= 0 || window <= 0) throw new ArgumentOutOfRangeException(nameof(baseThreshold), "window and threshold must be positive");
        int k = logits[0].Length;
        var thresholds = Enumerable.Repeat(baseThreshold, k).ToArray();
        var probs = new float[truth.Length][];
        for (int i = 0; i < probs.Length; i++) probs[i] = new float[k];

        double Score(int[] th, out double top1)
        {
            for (int i = 0; i < truth.Length; i++)
                SpikingReadout.Probabilities(logits[i], th, window, beta, stepWeights ?? [], probs[i]);
            var m = ClassificationMetrics.Compute(truth, probs);
            top1 = m.Top1;
            return objective == CalibrationObjective.MacroF1 ? m.MacroF1 : m.BalancedAccuracy;
        }

        double before = Score(thresholds, out double top1Before), best = before, top1Best = top1Before;
        var candidates = Enumerable.Range(-8, 17).Select(j => Math.Max(1, (int)Math.Round(baseThreshold * Math.Pow(2, j / 8.0), MidpointRounding.AwayFromZero)))
            .Distinct().ToArray();
        for (int pass = 0; pass < 6; pass++)
        {
            bool changed = false;
            for (int c = 0; c < k; c++)
            {
                int keep = thresholds[c];
                foreach (int cand in candidates)
                {
                    if (cand == thresholds[c]) continue;
                    int old = thresholds[c];
                    thresholds[c] = cand;
                    double s = Score(thresholds, out double t1);
                    if (s > best + 1e-12) { best = s; top1Best = t1; keep = cand; changed = true; }
                    thresholds[c] = old;
                }
                thresholds[c] = keep;
            }
            if (!changed) break;
        }
        return new ClassThresholdFit(thresholds, before, best, top1Before, top1Best);
    }
}
