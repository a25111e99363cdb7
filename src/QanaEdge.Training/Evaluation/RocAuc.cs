namespace QanaEdge.Training.Evaluation;

/// <summary>One-vs-rest ROC analysis of a score against binary truth.</summary>
public static class RocAuc
{
    /// <summary>
    /// Exact ROC AUC from ranks (the Mann–Whitney U statistic): AUC = (R₊ − n₊(n₊+1)/2) / (n₊·n₋), with R₊ the
    /// sum of the positives' ranks and tied scores sharing their average rank, so a tie between a positive
    /// and a negative counts one half. Equals the trapezoidal area under the ROC curve. NaN when either
    /// class is empty.
    /// </summary>
    public static double Compute(ReadOnlySpan<double> scores, ReadOnlySpan<bool> positive)
    {
        if (scores.Length != positive.Length) throw new ArgumentException("scores and labels differ in length");
        int n = scores.Length;
        long nPos = 0;
        foreach (bool p in positive) if (p) nPos++;
        long nNeg = n - nPos;
        if (nPos == 0 || nNeg == 0) return double.NaN;
        foreach (double s in scores) if (double.IsNaN(s)) throw new ArgumentException("a score is NaN");

        var order = new int[n];
        for (int i = 0; i < n; i++) order[i] = i;
        var keys = scores.ToArray();
        Array.Sort(keys, order);
        double rankSumPos = 0;
        for (int i = 0; i < n;)
        {
            int j = i;
            while (j + 1 < n && keys[j + 1] == keys[i]) j++;
            double averageRank = (i + j) / 2.0 + 1.0; // ranks are 1-based
            for (int m = i; m <= j; m++) if (positive[order[m]]) rankSumPos += averageRank;
            i = j + 1;
        }
        return (rankSumPos - nPos * (nPos + 1) / 2.0) / ((double)nPos * nNeg);
    }

    /// <summary>
    /// ROC curve points (false-positive rate, true-positive rate), from (0,0) to (1,1), one point per distinct
    /// score (a case is called positive when its score ≥ the threshold). Empty when either class is empty.
    /// </summary>
    public static (double[] Fpr, double[] Tpr, double[] Thresholds) Curve(ReadOnlySpan<double> scores, ReadOnlySpan<bool> positive)
    {
        if (scores.Length != positive.Length) throw new ArgumentException("scores and labels differ in length");
        int n = scores.Length;
        int nPos = 0;
        foreach (bool p in positive) if (p) nPos++;
        int nNeg = n - nPos;
        if (nPos == 0 || nNeg == 0) return ([], [], []);
        var order = new int[n];
        for (int i = 0; i < n; i++) order[i] = i;
        var keys = scores.ToArray();
        Array.Sort(keys, order);
        var fpr = new List<double> { 0 }; var tpr = new List<double> { 0 }; var thr = new List<double> { double.PositiveInfinity };
        int tp = 0, fp = 0;
        for (int i = n - 1; i >= 0;)
        {
            int j = i;
            while (j - 1 >= 0 && keys[j - 1] == keys[i]) j--;
            for (int m = j; m <= i; m++) { if (positive[order[m]]) tp++; else fp++; }
            fpr.Add((double)fp / nNeg); tpr.Add((double)tp / nPos); thr.Add(keys[i]);
            i = j - 1;
        }
        return (fpr.ToArray(), tpr.ToArray(), thr.ToArray());
    }
}
