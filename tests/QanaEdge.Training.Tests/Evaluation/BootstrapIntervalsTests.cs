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
        Assert.InRange(a.Top1.High - a.Top1.Low, 1.6 * halfWidth, 2.4 * halfWidth);
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
        Assert.Equal("lesion", summary.IntervalUnit);
        using var doc = JsonDocument.Parse(summary.ToJson());
        var intervals = doc.RootElement.GetProperty("intervals_95");
        Assert.Contains("lesion", intervals.GetProperty("method").GetString());
        var top1 = intervals.GetProperty("top1").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        Assert.Equal([Math.Round(summary.Intervals.Top1.Low, 6), Math.Round(summary.Intervals.Top1.High, 6)], top1);
        Assert.InRange(doc.RootElement.GetProperty("top1").GetDouble(), top1[0], top1[1]);
        Assert.Contains("bootstrap over lesions", HtmlReport.Render(summary));

        images[3] = images[3] with { LesionId = null };
        Assert.Equal("image", EvaluationSummary.Create(images).IntervalUnit);
    }

    private static float[] OneHot(int c)
    {
        var p = new float[7];
        p[c] = 1;
        return p;
    }
}
