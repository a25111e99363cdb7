using QanaEdge.Training.Evaluation;

namespace QanaEdge.Training.Calibration;

/// <summary>The referral threshold and what it achieves on the data it was fitted on.</summary>
public sealed record ReferralFit(double Threshold, double Sensitivity, double Specificity, int Malignant, int Benign);

/// <summary>
/// Fits the referral threshold on the validation split: refer when p(akiec)+p(bcc)+p(mel) ≥ t. The largest t
/// whose sensitivity for the malignant classes is at least the target (0.9) is chosen, which gives the
/// highest specificity among thresholds meeting the target: t is the score of the ⌈target·M⌉-th highest
/// malignant case (M malignant cases).
/// </summary>
public static class ReferralCalibration
{
    public const double DefaultTargetSensitivity = 0.9;

    public static ReferralFit Fit(int[] truth, float[][] probabilities, double targetSensitivity = DefaultTargetSensitivity)
    {
        ArgumentNullException.ThrowIfNull(truth);
        ArgumentNullException.ThrowIfNull(probabilities);
        if (truth.Length != probabilities.Length) throw new ArgumentException("truth and probabilities differ in length");
        if (targetSensitivity is <= 0 or > 1) throw new ArgumentOutOfRangeException(nameof(targetSensitivity), "must be in (0, 1]");
        var malignantScores = new List<double>();
        for (int i = 0; i < truth.Length; i++)
            if (ReferralMetrics.IsMalignant(truth[i])) malignantScores.Add(ReferralMetrics.MalignancyScore(probabilities[i]));
        if (malignantScores.Count == 0) throw new ArgumentException("the calibration set has no malignant case: the referral threshold cannot be fitted");
        malignantScores.Sort((a, b) => b.CompareTo(a));
        // Small tolerance so that 0.9·M computed in floating point does not round up past an integer.
        int needed = (int)Math.Ceiling(targetSensitivity * malignantScores.Count - 1e-9);
        needed = Math.Clamp(needed, 1, malignantScores.Count);
        // Float scores are summed in double; compare against the same double so the fitted case is referred.
        double threshold = malignantScores[needed - 1];
        var m = ReferralMetrics.Compute(truth, probabilities, threshold);
        return new ReferralFit(threshold, m.Sensitivity, m.Specificity, m.Malignant, m.Benign);
    }
}
