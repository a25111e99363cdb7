using QanaEdge.Model;

namespace QanaEdge.Training.Evaluation;

/// <summary>Precision, recall, F1 and AUC of one class against the rest.</summary>
/// <param name="Support">Number of true cases of the class.</param>
/// <param name="Predicted">Number of cases predicted as the class.</param>
/// <param name="Auc">One-vs-rest ROC AUC; NaN when the class has no positives or no negatives.</param>
public sealed record ClassScores(string Code, double Precision, double Recall, double F1, int Support, int Predicted, double Auc);

/// <summary>
/// The figures we report for a K-class classifier (see docs/evaluation.md for definitions).
/// Conventions follow scikit-learn so numbers compare: a ratio with a zero denominator counts as 0;
/// macro-F1 averages over classes that occur in the truth or the predictions; balanced accuracy averages
/// recall over classes present in the truth (ISIC 2018 Task 3); macro AUC averages the one-vs-rest AUC
/// over classes with at least one positive and one negative.
/// </summary>
public sealed class ClassificationMetrics
{
    public int N { get; }
    public int ClassCount { get; }
    public double Top1 { get; }
    public double MacroF1 { get; }
    /// <summary>Mean precision over the classes macro-F1 averages (for the ablation table).</summary>
    public double MacroPrecision { get; }
    public double BalancedAccuracy { get; }
    public double AucMacro { get; }
    public IReadOnlyList<ClassScores> PerClass { get; }
    /// <summary>Confusion[t, p] = number of cases of true class t predicted as p.</summary>
    public int[,] Confusion { get; }

    private ClassificationMetrics(int n, int k, double top1, double macroF1, double macroPrecision, double bal, double auc,
        ClassScores[] perClass, int[,] confusion)
    {
        N = n; ClassCount = k; Top1 = top1; MacroF1 = macroF1; MacroPrecision = macroPrecision; BalancedAccuracy = bal; AucMacro = auc;
        PerClass = perClass; Confusion = confusion;
    }

    /// <summary>Metrics with the arg-max of each probability row as the prediction (first maximum on ties).</summary>
    public static ClassificationMetrics Compute(int[] truth, float[][] probabilities) =>
        Compute(truth, probabilities, null);

    /// <summary>Metrics for explicit predictions (e.g. after per-class thresholds), with the probabilities
    /// used only for the AUC. When <paramref name="predictions"/> is null the arg-max is used.</summary>
    public static ClassificationMetrics Compute(int[] truth, float[][] probabilities, int[]? predictions,
        IReadOnlyList<string>? classCodes = null)
    {
        ArgumentNullException.ThrowIfNull(truth);
        ArgumentNullException.ThrowIfNull(probabilities);
        int n = truth.Length;
        if (n == 0) throw new ArgumentException("no cases to evaluate", nameof(truth));
        if (probabilities.Length != n) throw new ArgumentException($"{probabilities.Length} probability rows for {n} labels", nameof(probabilities));
        int k = probabilities[0]?.Length ?? throw new ArgumentException("null probability row", nameof(probabilities));
        if (k < 2) throw new ArgumentException("need at least two classes", nameof(probabilities));
        var codes = classCodes ?? (k == Classes.Count ? Classes.Codes : Enumerable.Range(0, k).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray());
        if (codes.Count != k) throw new ArgumentException($"{codes.Count} class codes for {k} classes", nameof(classCodes));
        if (predictions is not null && predictions.Length != n) throw new ArgumentException($"{predictions.Length} predictions for {n} labels", nameof(predictions));

        var confusion = new int[k, k];
        int correct = 0;
        for (int i = 0; i < n; i++)
        {
            var row = probabilities[i];
            if (row is null || row.Length != k) throw new ArgumentException($"probability row {i} does not have {k} entries", nameof(probabilities));
            int t = truth[i];
            if ((uint)t >= (uint)k) throw new ArgumentException($"label {t} at {i} is outside 0..{k - 1}", nameof(truth));
            int p = predictions?[i] ?? ArgMax(row);
            if ((uint)p >= (uint)k) throw new ArgumentException($"prediction {p} at {i} is outside 0..{k - 1}", nameof(predictions));
            confusion[t, p]++;
            if (p == t) correct++;
        }

        var per = new ClassScores[k];
        double f1Sum = 0, precisionSum = 0, recallSum = 0, aucSum = 0;
        int f1Classes = 0, recallClasses = 0, aucClasses = 0;
        var scores = new double[n];
        var positive = new bool[n];
        for (int c = 0; c < k; c++)
        {
            int tp = confusion[c, c], support = 0, predicted = 0;
            for (int j = 0; j < k; j++) { support += confusion[c, j]; predicted += confusion[j, c]; }
            double precision = predicted == 0 ? 0 : (double)tp / predicted;
            double recall = support == 0 ? 0 : (double)tp / support;
            double f1 = precision + recall == 0 ? 0 : 2 * precision * recall / (precision + recall);
            for (int i = 0; i < n; i++) { scores[i] = probabilities[i][c]; positive[i] = truth[i] == c; }
            double auc = RocAuc.Compute(scores, positive);
            per[c] = new ClassScores(codes[c], precision, recall, f1, support, predicted, auc);
            if (support > 0 || predicted > 0) { f1Sum += f1; precisionSum += precision; f1Classes++; }
            if (support > 0) { recallSum += recall; recallClasses++; }
            if (!double.IsNaN(auc)) { aucSum += auc; aucClasses++; }
        }
        return new ClassificationMetrics(n, k, (double)correct / n,
            f1Classes == 0 ? 0 : f1Sum / f1Classes,
            f1Classes == 0 ? 0 : precisionSum / f1Classes,
            recallClasses == 0 ? 0 : recallSum / recallClasses,
            aucClasses == 0 ? double.NaN : aucSum / aucClasses,
            per, confusion);
    }

    /// <summary>Index of the largest value; the first one on ties (as the device decides).</summary>
    public static int ArgMax(ReadOnlySpan<float> row)
    {
        int best = 0;
        for (int j = 1; j < row.Length; j++) if (row[j] > row[best]) best = j;
        return best;
    }
}
