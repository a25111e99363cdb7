using System.Text.Json;
using QanaEdge.Training.Data;
using QanaEdge.Training.Evaluation;

namespace QanaEdge.Training.Tests.Evaluation;

public class BootstrapIntervalsTests
{
    /// <summary>Seven classes, 300 images, about 70 % right, the rare classes rare (as in HAM10000).</summary>
    private static (int[] Truth, int[] Predicted) Sample(int n = 300)
    {
        var rng = new SeededRandom(5);
        var truth = new int[n];
        var predicted = new int[n];
        for (int i = 0; i < n; i++)
        {
            truth[i] = i % 10 < 6 ? 5 : i % 7;
            predicted[i] = rng.NextBool(0.7) ? truth[i] : rng.NextInt(7);
        }
        return (truth, predicted);
    }

    [Fact]
    public void Intervals_hold_the_point_estimates_and_repeat_for_the_same_figures()
    {
        var (truth, predicted) = Sample();
        var ungrouped = new string?[truth.Length];
        var a = BootstrapIntervals.Compute(truth, predicted, ungrouped, 7);
        var b = BootstrapIntervals.Compute(truth, predicted, ungrouped, 7);
        Assert.Equal(a, b);
        var m = ClassificationMetrics.Compute(truth, truth.Select(t => new float[7]).ToArray(), predicted);
        foreach (var (interval, point) in new[] { (a.Top1, m.Top1), (a.BalancedAccuracy, m.BalancedAccuracy), (a.MacroF1, m.MacroF1) })
        {
            Assert.InRange(point, interval.Low, interval.High);
            Assert.True(interval.High - interval.Low is > 0.02 and < 0.3, $"{interval} around {point}");
        }
        // Binomial standard error of top-1 at n = 300: the 95 % interval is about ±1.96·sqrt(p(1-p)/n) wide.
        double halfWidth = 1.96 * Math.Sqrt(m.Top1 * (1 - m.Top1) / truth.Length);
        Assert.InRange(a.Top1.High - a.Top1.Low, 1.85 * halfWidth, 2.3 * halfWidth);   // a 90 % interval would be 1.68
    }

    [Fact]
    public void A_perfect_classifier_has_intervals_of_one()
    {
        var (truth, _) = Sample();
        var r = BootstrapIntervals.Compute(truth, truth, new string?[truth.Length], 7);
        Assert.Equal(new Interval(1, 1), r.Top1);
        Assert.Equal(new Interval(1, 1), r.BalancedAccuracy);
        Assert.Equal(new Interval(1, 1), r.MacroF1);
    }

    /// <summary>
    /// Every image shown twice: resampled by lesion (both copies in one group), the intervals are those of the single
    /// images, since each resample draws the same groups and every count doubles; resampled by image, the copies pass
    /// for independent cases and the intervals shrink, which is why lesions are the unit.
    /// </summary>
    [Fact]
    public void Two_images_of_one_lesion_count_as_one_draw()
    {
        var (truth, predicted) = Sample();
        string?[] lesions = truth.Select((_, i) => $"HAM_{i}").ToArray();
        var single = BootstrapIntervals.Compute(truth, predicted, lesions, 7);
        int[] truth2 = [.. truth, .. truth], predicted2 = [.. predicted, .. predicted];
        var byLesion = BootstrapIntervals.Compute(truth2, predicted2, [.. lesions, .. lesions], 7);
        var byImage = BootstrapIntervals.Compute(truth2, predicted2, new string?[truth2.Length], 7);
        Assert.Equal(single.Top1.Low, byLesion.Top1.Low, 12);
        Assert.Equal(single.Top1.High, byLesion.Top1.High, 12);
        Assert.Equal(single.MacroF1.Low, byLesion.MacroF1.Low, 12);
        Assert.Equal(single.BalancedAccuracy.High, byLesion.BalancedAccuracy.High, 12);
        Assert.True(byImage.Top1.High - byImage.Top1.Low < 0.8 * (single.Top1.High - single.Top1.Low),
            $"by image {byImage.Top1}, by lesion {byLesion.Top1}");
    }

    [Fact]
    public void The_evaluation_json_and_html_carry_the_intervals_by_lesion_when_every_image_has_one()
    {
        var (truth, predicted) = Sample(70);
        var images = truth.Select((t, i) => new EvaluatedImage($"ISIC_{i}", t, OneHot(predicted[i]), predicted[i], false, false, 1,
            LesionId: $"HAM_{i / 2}")).ToList();
        var summary = EvaluationSummary.Create(images);
        Assert.Equal("35 lesions", summary.IntervalUnit);
        using var doc = JsonDocument.Parse(summary.ToJson());
        var intervals = doc.RootElement.GetProperty("intervals_95");
        Assert.Contains("lesion", intervals.GetProperty("method").GetString());
        var top1 = intervals.GetProperty("top1").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        Assert.Equal([Math.Round(summary.Intervals.Top1.Low, 6), Math.Round(summary.Intervals.Top1.High, 6)], top1);
        Assert.InRange(doc.RootElement.GetProperty("top1").GetDouble(), top1[0], top1[1]);
        Assert.Contains("bootstrap over 35 lesions", HtmlReport.Render(summary));

        // An image without a lesion id counts alone; the others keep their lesions.
        images[3] = images[3] with { LesionId = null };
        Assert.Equal("36 lesions, counting the one image without a lesion id as its own", EvaluationSummary.Create(images).IntervalUnit);
        Assert.Equal("70 images", EvaluationSummary.Create([.. images.Select(i => i with { LesionId = null })]).IntervalUnit);

        // One lesion gives every resample the same figures: no interval rather than one of zero width.
        var one = EvaluationSummary.Create([.. images.Take(4).Select(i => i with { LesionId = "HAM_0" })]);
        Assert.True(double.IsNaN(one.Intervals.Top1.Low));
        using var oneDoc = JsonDocument.Parse(one.ToJson());
        Assert.Equal(JsonValueKind.Null, oneDoc.RootElement.GetProperty("intervals_95").GetProperty("macro_f1").ValueKind);
    }

    /// <summary>
    /// The figures each resample is scored by follow ClassificationMetrics exactly, also when a class is missing from
    /// the truth, never predicted, or both (as happens in resamples of rare classes).
    /// </summary>
    [Fact]
    public void Resample_figures_follow_the_metrics_conventions_when_classes_are_missing()
    {
        var rng = new SeededRandom(11);
        for (int trial = 0; trial < 200; trial++)
        {
            int n = 1 + rng.NextInt(40);
            var truth = new int[n];
            var predicted = new int[n];
            // Classes 5 and 6 are never true; class 4 is never predicted; class 3 is neither, on most trials.
            for (int i = 0; i < n; i++)
            {
                truth[i] = rng.NextInt(trial % 2 == 0 ? 5 : 7) is var t && t == 3 && trial % 3 != 0 ? 0 : t;
                predicted[i] = rng.NextBool(0.5) ? truth[i] : rng.NextInt(7);
                if (predicted[i] == 4 || (predicted[i] == 3 && trial % 3 != 0)) predicted[i] = 1;
            }
            var confusion = new int[49];
            for (int i = 0; i < n; i++) confusion[truth[i] * 7 + predicted[i]]++;
            var m = ClassificationMetrics.Compute(truth, truth.Select(_ => new float[7]).ToArray(), predicted);
            var (top1, balanced, macroF1) = BootstrapIntervals.Figures(confusion, 7);
            Assert.Equal(m.Top1, top1, 12);
            Assert.Equal(m.BalancedAccuracy, balanced, 12);
            Assert.Equal(m.MacroF1, macroF1, 12);
        }
    }

    private static float[] OneHot(int c)
    {
        var p = new float[7];
        p[c] = 1;
        return p;
    }
}
