using QanaEdge.Training.Data;

namespace QanaEdge.Training.Evaluation;

/// <summary>A two-sided interval: <see cref="Low"/> and <see cref="High"/> are the 2.5th and 97.5th percentiles.</summary>
public readonly record struct Interval(double Low, double High);

/// <summary>
/// Percentile-bootstrap 95 % intervals for top-1, balanced accuracy and macro-F1, resampling lesions rather than
/// images: HAM10000 holds several images of many lesions, and those images are not independent draws, so resampling
/// them one by one would make the intervals too narrow. Each resample draws as many groups as there are, with
/// replacement, and scores every image of each group drawn with the conventions of <see cref="ClassificationMetrics"/>
/// (balanced accuracy over classes present in the truth, macro-F1 over classes in the truth or the predictions). The
/// draws are seeded, so the same figures give the same intervals. With a test split whose rare classes hold 12–53
/// images, these intervals are wide: they say how far a figure measured here can be trusted. Fewer than two groups
/// give no interval (NaN): every resample would be the same.
/// </summary>
public static class BootstrapIntervals
{
    public const int DefaultResamples = 2000;
    private const ulong Seed = 0x9E3779B97F4A7C15;

    /// <summary>The intervals of top-1, balanced accuracy and macro-F1.</summary>
    /// <param name="truth">True class of each image.</param>
    /// <param name="predicted">Predicted class of each image.</param>
    /// <param name="groups">Group key of each image (the lesion); a null key makes the image a group of its own.</param>
    /// <param name="classCount">Number of classes.</param>
    public static (Interval Top1, Interval BalancedAccuracy, Interval MacroF1) Compute(int[] truth, int[] predicted,
        IReadOnlyList<string?> groups, int classCount, int resamples = DefaultResamples) =>
        Compute(truth, predicted, groups, classCount, out _, resamples);

    /// <inheritdoc cref="Compute(int[], int[], IReadOnlyList{string?}, int, int)"/>
    /// <param name="groupCount">The number of groups resampled.</param>
    public static (Interval Top1, Interval BalancedAccuracy, Interval MacroF1) Compute(int[] truth, int[] predicted,
        IReadOnlyList<string?> groups, int classCount, out int groupCount, int resamples = DefaultResamples)
    {
        ArgumentNullException.ThrowIfNull(truth);
        ArgumentNullException.ThrowIfNull(predicted);
        ArgumentNullException.ThrowIfNull(groups);
        if (truth.Length == 0) throw new ArgumentException("no cases", nameof(truth));
        if (predicted.Length != truth.Length || groups.Count != truth.Length)
            throw new ArgumentException($"{truth.Length} labels, {predicted.Length} predictions and {groups.Count} group keys", nameof(groups));
        ArgumentOutOfRangeException.ThrowIfLessThan(classCount, 2);
        ArgumentOutOfRangeException.ThrowIfLessThan(resamples, 100);

        // Each group's images as (truth, prediction) cells of the confusion matrix.
        var byKey = new Dictionary<string, List<int>>(StringComparer.Ordinal);
        var members = new List<List<int>>();
        for (int i = 0; i < truth.Length; i++)
        {
            if ((uint)truth[i] >= (uint)classCount || (uint)predicted[i] >= (uint)classCount)
                throw new ArgumentException($"class index outside 0..{classCount - 1} at {i}", nameof(truth));
            List<int> cells;
            if (groups[i] is not { } key) members.Add(cells = []);
            else if (!byKey.TryGetValue(key, out cells!)) { byKey[key] = cells = []; members.Add(cells); }
            cells.Add(truth[i] * classCount + predicted[i]);
        }
        int[][] cellsOf = members.Select(m => m.ToArray()).ToArray();
        groupCount = cellsOf.Length;
        if (groupCount < 2)
        {
            var none = new Interval(double.NaN, double.NaN);
            return (none, none, none);
        }

        var top1 = new double[resamples];
        var balanced = new double[resamples];
        var macroF1 = new double[resamples];
        var confusion = new int[classCount * classCount];
        var rng = new SeededRandom(Seed);
        for (int r = 0; r < resamples; r++)
        {
            Array.Clear(confusion);
            for (int g = 0; g < cellsOf.Length; g++)
                foreach (int cell in cellsOf[rng.NextInt(cellsOf.Length)]) confusion[cell]++;
            (top1[r], balanced[r], macroF1[r]) = Figures(confusion, classCount);
        }
        return (Percentiles(top1), Percentiles(balanced), Percentiles(macroF1));
    }

    /// <summary>
    /// Top-1, balanced accuracy and macro-F1 of a k×k confusion matrix (row-major, truth by prediction, at least one
    /// case), by <see cref="ClassificationMetrics"/>' conventions.
    /// </summary>
    public static (double Top1, double BalancedAccuracy, double MacroF1) Figures(int[] confusion, int k)
    {
        int n = 0, correct = 0, recallClasses = 0, f1Classes = 0;
        double recallSum = 0, f1Sum = 0;
        for (int c = 0; c < k; c++)
        {
            int tp = confusion[c * k + c], support = 0, predicted = 0;
            for (int j = 0; j < k; j++) { support += confusion[c * k + j]; predicted += confusion[j * k + c]; }
            n += support;
            correct += tp;
            double precision = predicted == 0 ? 0 : (double)tp / predicted;
            double recall = support == 0 ? 0 : (double)tp / support;
            if (support > 0) { recallSum += recall; recallClasses++; }
            if (support > 0 || predicted > 0)
            {
                f1Sum += precision + recall == 0 ? 0 : 2 * precision * recall / (precision + recall);
                f1Classes++;
            }
        }
        return ((double)correct / n, recallSum / recallClasses, f1Sum / f1Classes);
    }

    private static Interval Percentiles(double[] values)
    {
        Array.Sort(values);
        return new Interval(Quantile(values, 0.025), Quantile(values, 0.975));
    }

    /// <summary>Linear interpolation between order statistics (NumPy's default).</summary>
    private static double Quantile(double[] sorted, double q)
    {
        double at = q * (sorted.Length - 1);
        int lo = (int)Math.Floor(at);
        int hi = Math.Min(lo + 1, sorted.Length - 1);
        return sorted[lo] + (at - lo) * (sorted[hi] - sorted[lo]);
    }
}
