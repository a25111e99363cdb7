using QanaEdge.Model;

namespace QanaEdge.Training.Evaluation;

/// <summary>Sensitivity and specificity of the malignancy referral flag.</summary>
/// <param name="Sensitivity">Referred malignant cases / malignant cases (NaN when there are none).</param>
/// <param name="Specificity">Not-referred benign cases / benign cases (NaN when there are none).</param>
public sealed record ReferralMetrics(double Sensitivity, double Specificity, int Malignant, int Benign, int Referred)
{
    /// <summary>True for akiec, bcc and mel in the canonical class order.</summary>
    public static bool IsMalignant(int classIndex) => Classes.Malignant.Contains(Classes.Codes[classIndex]);

    /// <summary>The malignancy score p(akiec)+p(bcc)+p(mel) of a probability row in class order.</summary>
    public static double MalignancyScore(ReadOnlySpan<float> probabilities)
    {
        if (probabilities.Length != Classes.Count) throw new ArgumentException($"expected {Classes.Count} probabilities");
        double s = 0;
        for (int c = 0; c < probabilities.Length; c++) if (IsMalignant(c)) s += probabilities[c];
        return s;
    }

    /// <summary>Referral figures for explicit flags (what the device decided).</summary>
    public static ReferralMetrics Compute(int[] truth, bool[] referred)
    {
        if (truth.Length != referred.Length) throw new ArgumentException("truth and flags differ in length");
        int mal = 0, ben = 0, tp = 0, tn = 0, refs = 0;
        for (int i = 0; i < truth.Length; i++)
        {
            bool m = IsMalignant(truth[i]);
            if (referred[i]) refs++;
            if (m) { mal++; if (referred[i]) tp++; }
            else { ben++; if (!referred[i]) tn++; }
        }
        return new ReferralMetrics(mal == 0 ? double.NaN : (double)tp / mal, ben == 0 ? double.NaN : (double)tn / ben, mal, ben, refs);
    }

    /// <summary>Referral figures when a case is referred as its malignancy score reaches the threshold.</summary>
    public static ReferralMetrics Compute(int[] truth, float[][] probabilities, double threshold)
    {
        var flags = new bool[truth.Length];
        for (int i = 0; i < flags.Length; i++) flags[i] = MalignancyScore(probabilities[i]) >= threshold;
        return Compute(truth, flags);
    }
}
