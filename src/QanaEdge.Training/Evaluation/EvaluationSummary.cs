using System.Text;
using System.Text.Json;
using QanaEdge.Model;

namespace QanaEdge.Training.Evaluation;

/// <summary>What the classifier said about one labelled image.</summary>
/// <param name="Truth">True class index (canonical order).</param>
/// <param name="Probabilities">Class probabilities, canonical order.</param>
/// <param name="Predicted">The label the device reported (it may differ from the arg-max when per-class
/// thresholds are calibrated).</param>
/// <param name="Refer">The device's referral flag.</param>
/// <param name="Tiled">Whether the tiling fallback fired.</param>
/// <param name="Symmetrized">Whether the symmetry fallback fired (only when it was chosen instead of tiling).</param>
/// <param name="LesionId">The lesion the image shows, when the labels say: the unit the intervals resample.</param>
public sealed record EvaluatedImage(string ImageId, int Truth, float[] Probabilities, int Predicted, bool Refer,
    bool Tiled, double LatencyMs, bool Symmetrized = false, string? LesionId = null);

/// <summary>An image the pipeline refused (unreadable or failing integrity checks), with the reason.</summary>
/// <param name="Reason">The decoder's reason code (<c>truncated</c>, <c>too_large</c>...), or <see cref="Unreadable"/>.</param>
public sealed record RejectedImage(string ImageId, string Reason, string Message = "")
{
    /// <summary>The reason of a file that could not be read at all (a permission, an I/O error): no image was judged.</summary>
    public const string Unreadable = "unreadable";
}

/// <summary>
/// The result of an evaluation run: the figures of the JSON contract (n, top1, macro_f1, balanced_accuracy,
/// auc_macro, per_class, confusion, tiling_trigger_rate, latency_ms_p50, referral; symmetry_trigger_rate and
/// intervals_95 are additions) and the per-image data
/// the HTML report plots. Rejected images are not in n; they are listed separately.
/// </summary>
public sealed class EvaluationSummary
{
    public required int N { get; init; }
    public required ClassificationMetrics Metrics { get; init; }
    public required ReferralMetrics Referral { get; init; }
    public required double TilingTriggerRate { get; init; }
    /// <summary>Share of images the symmetry fallback ran for (0 unless it was chosen).</summary>
    public double SymmetryTriggerRate { get; init; }
    public required double LatencyMsP50 { get; init; }
    /// <summary>95 % bootstrap intervals of top-1, balanced accuracy and macro-F1 (<see cref="BootstrapIntervals"/>).</summary>
    public required (Interval Top1, Interval BalancedAccuracy, Interval MacroF1) Intervals { get; init; }
    /// <summary>What the intervals resample, with the count: "1263 lesions", "70 images", or lesions with the images
    /// that name none counted alone.</summary>
    public required string IntervalUnit { get; init; }
    public required IReadOnlyList<EvaluatedImage> Images { get; init; }
    public IReadOnlyList<RejectedImage> Rejected { get; init; } = [];
    /// <summary>How many of <see cref="Rejected"/> could not be read at all, as opposed to refused by the decoder.</summary>
    public int UnreadableCount => Rejected.Count(r => r.Reason == RejectedImage.Unreadable);
    /// <summary>Model id and version, labels file, date: shown in the report.</summary>
    public IReadOnlyDictionary<string, string> Context { get; init; } = new Dictionary<string, string>();

    public static EvaluationSummary Create(IReadOnlyList<EvaluatedImage> images, IReadOnlyList<RejectedImage>? rejected = null,
        IReadOnlyDictionary<string, string>? context = null)
    {
        if (images.Count == 0) throw new ArgumentException("no image was classified: nothing to evaluate");
        int[] truth = images.Select(i => i.Truth).ToArray();
        int[] predicted = images.Select(i => i.Predicted).ToArray();
        var metrics = ClassificationMetrics.Compute(truth, images.Select(i => i.Probabilities).ToArray(), predicted, Classes.Codes);
        // An image without a lesion id is a group of its own; the others keep their lesions.
        string?[] groups = images.Select(i => string.IsNullOrEmpty(i.LesionId) ? null : i.LesionId).ToArray();
        var intervals = BootstrapIntervals.Compute(truth, predicted, groups, Classes.Count, out int groupCount);
        int alone = groups.Count(g => g is null);
        string unit = alone == images.Count ? $"{groupCount} images"
            : alone == 0 ? $"{groupCount} lesions"
            : $"{groupCount} lesions, counting {(alone == 1 ? "the one image" : $"each of the {alone} images")} without a lesion id as its own";
        return new EvaluationSummary
        {
            N = images.Count,
            Metrics = metrics,
            Referral = ReferralMetrics.Compute(truth, images.Select(i => i.Refer).ToArray()),
            TilingTriggerRate = (double)images.Count(i => i.Tiled) / images.Count,
            SymmetryTriggerRate = (double)images.Count(i => i.Symmetrized) / images.Count,
            LatencyMsP50 = Median(images.Select(i => i.LatencyMs)),
            Intervals = intervals,
            IntervalUnit = unit,
            Images = images,
            Rejected = rejected ?? [],
            Context = context ?? new Dictionary<string, string>(),
        };
    }

    /// <summary>Median (mean of the two middle values for an even count).</summary>
    public static double Median(IEnumerable<double> values)
    {
        var s = values.Order().ToArray();
        if (s.Length == 0) return double.NaN;
        return s.Length % 2 == 1 ? s[s.Length / 2] : (s[s.Length / 2 - 1] + s[s.Length / 2]) / 2;
    }

    /// <summary>The JSON of the DESIGN.md contract (snake_case; NaN, e.g. an AUC without negatives, as null),
    /// plus "rejected" (count, the unreadable files included), "unreadable" (count) and "per_class.*.auc".</summary>
    public string ToJson()
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            var m = Metrics;
            w.WriteStartObject();
            w.WriteNumber("n", N);
            Number(w, "top1", m.Top1);
            Number(w, "macro_f1", m.MacroF1);
            Number(w, "balanced_accuracy", m.BalancedAccuracy);
            Number(w, "auc_macro", m.AucMacro);
            w.WriteStartObject("intervals_95");
            w.WriteString("method", $"percentile bootstrap over {IntervalUnit}, {BootstrapIntervals.DefaultResamples} resamples");
            foreach (var (name, interval) in new[] { ("top1", Intervals.Top1), ("balanced_accuracy", Intervals.BalancedAccuracy), ("macro_f1", Intervals.MacroF1) })
            {
                if (double.IsNaN(interval.Low)) { w.WriteNull(name); continue; }   // fewer than two groups
                w.WriteStartArray(name);
                w.WriteNumberValue(Math.Round(interval.Low, 6));
                w.WriteNumberValue(Math.Round(interval.High, 6));
                w.WriteEndArray();
            }
            w.WriteEndObject();
            w.WriteStartObject("per_class");
            foreach (var c in m.PerClass)
            {
                w.WriteStartObject(c.Code);
                Number(w, "precision", c.Precision);
                Number(w, "recall", c.Recall);
                Number(w, "f1", c.F1);
                w.WriteNumber("support", c.Support);
                Number(w, "auc", c.Auc);
                w.WriteEndObject();
            }
            w.WriteEndObject();
            w.WriteStartArray("confusion");
            for (int t = 0; t < m.ClassCount; t++)
            {
                w.WriteStartArray();
                for (int p = 0; p < m.ClassCount; p++) w.WriteNumberValue(m.Confusion[t, p]);
                w.WriteEndArray();
            }
            w.WriteEndArray();
            Number(w, "tiling_trigger_rate", TilingTriggerRate);
            Number(w, "symmetry_trigger_rate", SymmetryTriggerRate);
            Number(w, "latency_ms_p50", LatencyMsP50);
            w.WriteStartObject("referral");
            Number(w, "sensitivity", Referral.Sensitivity);
            Number(w, "specificity", Referral.Specificity);
            w.WriteEndObject();
            w.WriteNumber("rejected", Rejected.Count);
            w.WriteNumber("unreadable", UnreadableCount);
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(stream.ToArray());
    }

    private static void Number(Utf8JsonWriter w, string name, double value)
    {
        if (double.IsFinite(value)) w.WriteNumber(name, Math.Round(value, 6));
        else w.WriteNull(name);
    }
}
