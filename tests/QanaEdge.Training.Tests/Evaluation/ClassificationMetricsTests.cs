using QanaEdge.Training.Evaluation;

namespace QanaEdge.Training.Tests.Evaluation;

public class ClassificationMetricsTests
{
    /// <summary>One-hot probability rows for given predictions (K classes).</summary>
    private static float[][] OneHot(int[] predicted, int k) =>
        predicted.Select(p => Enumerable.Range(0, k).Select(j => j == p ? 1f : 0f).ToArray()).ToArray();

    [Fact]
    public void Scikit_learn_documentation_f1_example()
    {
        // sklearn.metrics.f1_score docs: y_true=[0,1,2,0,1,2], y_pred=[0,2,1,0,0,1] -> macro 0.2666..., per class [0.8, 0, 0].
        var m = ClassificationMetrics.Compute([0, 1, 2, 0, 1, 2], OneHot([0, 2, 1, 0, 0, 1], 3));
        Assert.Equal(0.8, m.PerClass[0].F1, 12);
        Assert.Equal(0.0, m.PerClass[1].F1);
        Assert.Equal(0.0, m.PerClass[2].F1);
        Assert.Equal(0.8 / 3, m.MacroF1, 12);
        Assert.Equal(2.0 / 6, m.Top1, 12);
    }

    [Fact]
    public void Scikit_learn_documentation_balanced_accuracy_example()
    {
        // sklearn.metrics.balanced_accuracy_score docs: y_true=[0,1,0,0,1,0], y_pred=[0,1,0,0,0,1] -> 0.625.
        var m = ClassificationMetrics.Compute([0, 1, 0, 0, 1, 0], OneHot([0, 1, 0, 0, 0, 1], 2));
        Assert.Equal(0.625, m.BalancedAccuracy, 12);
    }

    [Fact]
    public void Scikit_learn_documentation_auc_example()
    {
        // sklearn.metrics.roc_auc_score docs: y=[0,0,1,1], scores=[0.1,0.4,0.35,0.8] -> 0.75.
        Assert.Equal(0.75, RocAuc.Compute([0.1, 0.4, 0.35, 0.8], [false, false, true, true]), 12);
    }

    [Fact]
    public void Auc_counts_a_tie_between_a_positive_and_a_negative_as_one_half()
    {
        // Pairs (pos, neg): (0.5 vs 0.5) = 1/2, (0.5 vs 0.2) = 1, (0.9 vs 0.5) = 1, (0.9 vs 0.2) = 1 -> 3.5/4.
        Assert.Equal(0.875, RocAuc.Compute([0.5, 0.9, 0.5, 0.2], [true, true, false, false]), 12);
        Assert.Equal(0.5, RocAuc.Compute([0.3, 0.3, 0.3], [true, false, false]), 12);
        Assert.True(double.IsNaN(RocAuc.Compute([0.3, 0.4], [true, true])));
    }

    [Fact]
    public void Roc_curve_area_equals_the_rank_auc()
    {
        var rng = new QanaEdge.Training.Data.SeededRandom(5);
        var scores = new double[200]; var pos = new bool[200];
        for (int i = 0; i < 200; i++) { pos[i] = rng.NextBool(0.3); scores[i] = Math.Round(rng.NextDouble() + (pos[i] ? 0.3 : 0), 1); }
        var (fpr, tpr, _) = RocAuc.Curve(scores, pos);
        double area = 0;
        for (int i = 1; i < fpr.Length; i++) area += (fpr[i] - fpr[i - 1]) * (tpr[i] + tpr[i - 1]) / 2;
        Assert.Equal(RocAuc.Compute(scores, pos), area, 12);
        Assert.Equal((0.0, 0.0), (fpr[0], tpr[0]));
        Assert.Equal((1.0, 1.0), (fpr[^1], tpr[^1]));
    }

    [Fact]
    public void Hand_computed_three_class_case()
    {
        // truth 0,0,0,1,1,2 ; predictions by arg-max below: 0,0,1,1,2,2
        int[] truth = [0, 0, 0, 1, 1, 2];
        float[][] p =
        [
            [0.7f, 0.2f, 0.1f],
            [0.5f, 0.4f, 0.1f],
            [0.3f, 0.6f, 0.1f],
            [0.2f, 0.7f, 0.1f],
            [0.1f, 0.3f, 0.6f],
            [0.1f, 0.1f, 0.8f],
        ];
        var m = ClassificationMetrics.Compute(truth, p);
        Assert.Equal(new[,] { { 2, 1, 0 }, { 0, 1, 1 }, { 0, 0, 1 } }, m.Confusion);
        Assert.Equal(4.0 / 6, m.Top1, 12);
        // class 0: P 2/2, R 2/3, F1 0.8 ; class 1: P 1/2, R 1/2, F1 0.5 ; class 2: P 1/2, R 1, F1 2/3
        Assert.Equal(1.0, m.PerClass[0].Precision, 12);
        Assert.Equal(2.0 / 3, m.PerClass[0].Recall, 12);
        Assert.Equal(0.5, m.PerClass[1].F1, 12);
        Assert.Equal(2.0 / 3, m.PerClass[2].F1, 12);
        Assert.Equal((0.8 + 0.5 + 2.0 / 3) / 3, m.MacroF1, 12);
        Assert.Equal((1.0 + 0.5 + 0.5) / 3, m.MacroPrecision, 12);
        Assert.Equal((2.0 / 3 + 0.5 + 1.0) / 3, m.BalancedAccuracy, 12);
        Assert.Equal(new[] { 3, 2, 1 }, m.PerClass.Select(c => c.Support));
        // AUC class 0: positives {0.7,0.5,0.3} vs negatives {0.2,0.1,0.1}: all 9 pairs ordered -> 1.
        // class 1: positives {0.7,0.3} vs negatives {0.2,0.4,0.6,0.1}: 0.7 beats 4, 0.3 beats 2 -> 6/8.
        // class 2: positive {0.8} vs {0.1,0.1,0.1,0.1,0.6} -> 1.
        Assert.Equal(1.0, m.PerClass[0].Auc, 12);
        Assert.Equal(0.75, m.PerClass[1].Auc, 12);
        Assert.Equal(1.0, m.PerClass[2].Auc, 12);
        Assert.Equal((1 + 0.75 + 1) / 3, m.AucMacro, 12);
    }

    [Fact]
    public void Absent_classes_follow_scikit_learn_conventions()
    {
        // Class 2 never occurs and is never predicted: it is left out of every macro average.
        // Class 1 is predicted once but never true: its F1 (0) counts in macro-F1 but not in balanced accuracy.
        var m = ClassificationMetrics.Compute([0, 0, 0], OneHot([0, 0, 1], 3));
        Assert.Equal((0.8 + 0) / 2, m.MacroF1, 12);
        Assert.Equal(2.0 / 3, m.BalancedAccuracy, 12);
        Assert.True(double.IsNaN(m.PerClass[0].Auc));
        Assert.True(double.IsNaN(m.AucMacro));
    }

    [Fact]
    public void Explicit_predictions_override_the_arg_max_and_ties_take_the_first_class()
    {
        float[][] p = [[0.5f, 0.5f], [0.2f, 0.8f]];
        var byArgMax = ClassificationMetrics.Compute([1, 1], p);
        Assert.Equal(0.5, byArgMax.Top1);
        var explicitPredictions = ClassificationMetrics.Compute([1, 1], p, [1, 1]);
        Assert.Equal(1.0, explicitPredictions.Top1);
    }

    [Fact]
    public void Bad_input_is_refused()
    {
        Assert.Throws<ArgumentException>(() => ClassificationMetrics.Compute([], []));
        Assert.Throws<ArgumentException>(() => ClassificationMetrics.Compute([0, 1], [[1f, 0f]]));
        Assert.Throws<ArgumentException>(() => ClassificationMetrics.Compute([3], [[1f, 0f]]));
        Assert.Throws<ArgumentException>(() => ClassificationMetrics.Compute([0, 1], [[1f, 0f], [1f]]));
    }

    [Fact]
    public void Referral_sensitivity_and_specificity()
    {
        // Class order akiec, bcc, bkl, df, mel, nv, vasc: malignant = 0, 1, 4.
        int[] truth = [4, 1, 0, 5, 5, 2, 5];
        float[][] p =
        [
            [0, 0, 0, 0, 0.6f, 0.4f, 0],     // mel, score 0.6 -> referred
            [0, 0.3f, 0, 0, 0, 0.7f, 0],     // bcc, score 0.3 -> missed
            [0.2f, 0.2f, 0, 0, 0.1f, 0.5f, 0],// akiec, score 0.5 -> referred
            [0, 0, 0, 0, 0.1f, 0.9f, 0],     // nv, 0.1 -> not referred
            [0, 0, 0, 0, 0.55f, 0.45f, 0],   // nv, 0.55 -> false referral
            [0, 0, 1, 0, 0, 0, 0],           // bkl, 0
            [0.1f, 0, 0, 0, 0, 0.9f, 0],     // nv, 0.1
        ];
        var r = ReferralMetrics.Compute(truth, p, 0.5);
        Assert.Equal(2.0 / 3, r.Sensitivity, 12);
        Assert.Equal(3.0 / 4, r.Specificity, 12);
        Assert.Equal((3, 4, 3), (r.Malignant, r.Benign, r.Referred));
    }
}
