using QanaEdge.Training.Evaluation;

namespace QanaEdge.Training.Calibration;

/// <summary>The tiling τ and its effect on the data it was fitted on.</summary>
public sealed record TilingFit(double Tau, double TriggerRate, double MacroF1Plain, double MacroF1WithTiling)
{
    /// <summary>Every candidate τ with its trigger rate and macro-F1, over the whole range (also past the budget), ascending.</summary>
    public IReadOnlyList<TilingPoint> Curve { get; init; } = [];
}

/// <summary>One candidate τ: the share of images it tiles and the macro-F1 of the decisions it gives.</summary>
public readonly record struct TilingPoint(double Tau, double TriggerRate, double MacroF1);

/// <summary>
/// Fits the tiling fallback's τ on the validation split. Inputs are, per image, the probabilities of the
/// single crop and those of the 2×2 tiled evaluation. For every candidate τ (0, i.e. never, and each distinct
/// top probability, just above it) the decision is "tiled when the plain top probability is under τ"; the
/// τ with the best macro-F1 is chosen among those whose trigger rate stays within a budget (tiling costs
/// four more inferences), the smallest such τ on ties, so tiling fires only when it pays. Candidates stop at
/// 1 (a package's τ is a probability); the whole curve is returned for the calibration figure.
/// </summary>
public static class TilingCalibration
{
    public const double DefaultMaxTriggerRate = 0.25;

    /// <param name="plainPredictions">The device's decisions for the single views (its tie rule); the first maximum when null.</param>
    /// <param name="tiledPredictions">The same for the tiled views.</param>
    public static TilingFit Fit(int[] truth, float[][] plain, float[][] tiled, double maxTriggerRate = DefaultMaxTriggerRate,
        int[]? plainPredictions = null, int[]? tiledPredictions = null)
    {
        if (truth.Length != plain.Length || truth.Length != tiled.Length) throw new ArgumentException("truth, plain and tiled differ in length");
        if (truth.Length == 0) throw new ArgumentException("nothing to calibrate on");
        if (maxTriggerRate is < 0 or > 1) throw new ArgumentOutOfRangeException(nameof(maxTriggerRate));
        int n = truth.Length;
        var top = plain.Select(p => (double)p.Max()).ToArray();
        var candidates = top.Distinct().Order().Select(t => Math.BitIncrement(t)).Where(t => t <= 1).Prepend(0.0).ToList();
        var plainPred = plainPredictions ?? plain.Select(p => ClassificationMetrics.ArgMax(p)).ToArray();
        var tiledPred = tiledPredictions ?? tiled.Select(p => ClassificationMetrics.ArgMax(p)).ToArray();
        if (plainPred.Length != n || tiledPred.Length != n) throw new ArgumentException("predictions differ in length from truth");
        double f1Plain = ClassificationMetrics.Compute(truth, plain, plainPred).MacroF1;
        double bestTau = 0, bestF1 = f1Plain, bestRate = 0;
        var combined = new int[n];
        var curve = new List<TilingPoint>(candidates.Count);
        foreach (double tau in candidates)
        {
            int triggered = 0;
            for (int i = 0; i < n; i++)
            {
                bool t = top[i] < tau;
                if (t) triggered++;
                combined[i] = t ? tiledPred[i] : plainPred[i];
            }
            double rate = (double)triggered / n;
            double f1 = ClassificationMetrics.Compute(truth, plain, combined).MacroF1;
            curve.Add(new TilingPoint(tau, rate, f1));
            if (rate > maxTriggerRate) continue; // past the budget: on the curve, never chosen
            if (f1 > bestF1 + 1e-12) { bestF1 = f1; bestTau = tau; bestRate = rate; }
        }
        return new TilingFit(bestTau, bestRate, f1Plain, bestF1) { Curve = curve };
    }
}
