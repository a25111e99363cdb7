using QanaEdge.Training.Evaluation;

namespace QanaEdge.Training.Calibration;

/// <summary>
/// The referral threshold and what it achieves on the data it was fitted on; <paramref name="SensitivityLowerBound"/>
/// is the one-sided Wilson lower confidence bound of that sensitivity.
/// </summary>
public sealed record ReferralFit(double Threshold, double Sensitivity, double Specificity, int Malignant, int Benign,
    double SensitivityLowerBound);

/// <summary>
/// Fits the referral threshold on the validation split: refer when p(akiec)+p(bcc)+p(mel) ≥ t. The target
/// sensitivity (0.9) must hold not just on the validation cases but with confidence: t is the score of the k-th
/// highest of the M malignant cases, for the smallest k whose one-sided 95 % Wilson lower bound of k/M reaches
/// the target, i.e. the largest such threshold and so the best specificity among them. Fitting the point estimate
/// to exactly 90 % (k = ⌈0.9·M⌉) left new images at 90 % only on average: the 2026-12-04 package, fitted that way on
/// 148 malignant validation cases, referred 85.7 % of the test split's. With a z of 0 the point-estimate rule
/// is back. When even k = M does not reach the bound (few malignant cases), every malignant case is referred.
/// </summary>
public static class ReferralCalibration
{
    public const double DefaultTargetSensitivity = 0.9;
    /// <summary>z of a one-sided 95 % normal confidence bound.</summary>
    public const double DefaultConfidenceZ = 1.6448536269514722;

    public static ReferralFit Fit(int[] truth, float[][] probabilities, double targetSensitivity = DefaultTargetSensitivity,
        double confidenceZ = DefaultConfidenceZ)
    {
        ArgumentNullException.ThrowIfNull(truth);
        ArgumentNullException.ThrowIfNull(probabilities);
        if (truth.Length != probabilities.Length) throw new ArgumentException("truth and probabilities differ in length");
        if (targetSensitivity is <= 0 or > 1) throw new ArgumentOutOfRangeException(nameof(targetSensitivity), "must be in (0, 1]");
        if (!(confidenceZ >= 0) || double.IsInfinity(confidenceZ)) throw new ArgumentOutOfRangeException(nameof(confidenceZ), "must be finite and >= 0");
        var malignantScores = new List<double>();
        for (int i = 0; i < truth.Length; i++)
            if (ReferralMetrics.IsMalignant(truth[i])) malignantScores.Add(ReferralMetrics.MalignancyScore(probabilities[i]));
        if (malignantScores.Count == 0) throw new ArgumentException("the calibration set has no malignant case: the referral threshold cannot be fitted");
        malignantScores.Sort((a, b) => b.CompareTo(a));
        int count = malignantScores.Count;
        // Small tolerance so that 0.9·M computed in floating point does not round up past an integer.
        int needed = Math.Clamp((int)Math.Ceiling(targetSensitivity * count - 1e-9), 1, count);
        while (needed < count && WilsonLowerBound(needed, count, confidenceZ) < targetSensitivity - 1e-12) needed++;
        // Float scores are summed in double; compare against the same double so the fitted case is referred.
        double threshold = malignantScores[needed - 1];
        var m = ReferralMetrics.Compute(truth, probabilities, threshold);
        return new ReferralFit(threshold, m.Sensitivity, m.Specificity, m.Malignant, m.Benign,
            WilsonLowerBound((int)Math.Round(m.Sensitivity * m.Malignant), m.Malignant, confidenceZ));
    }

    /// <summary>
    /// Lower end of the Wilson score interval for k successes in n trials with normal quantile z:
    /// (p̂ + z²/2n − z·√(p̂(1−p̂)/n + z²/4n²)) / (1 + z²/n), p̂ = k/n; p̂ itself for z = 0.
    /// </summary>
    public static double WilsonLowerBound(int successes, int trials, double z)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(trials);
        if (successes < 0 || successes > trials) throw new ArgumentOutOfRangeException(nameof(successes));
        double n = trials, p = successes / n, z2 = z * z;
        double centre = p + z2 / (2 * n);
        double spread = z * Math.Sqrt(p * (1 - p) / n + z2 / (4 * n * n));
        return (centre - spread) / (1 + z2 / n);
    }
}
