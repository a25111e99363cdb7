using System.Globalization;
using System.Net;
using System.Text;
using QanaEdge.Model;
using QanaEdge.Training.Calibration;

namespace QanaEdge.Training.Evaluation;

/// <summary>
/// The post-training calibration as standalone SVG figures (no library, like <see cref="HtmlReport"/>'s plots):
/// validation macro-F1 and trigger rate against the tiling τ; referral sensitivity and specificity against the
/// threshold; the per-class readout thresholds. Each is drawn from the numbers the fit used, with the
/// chosen value marked.
/// </summary>
public static class CalibrationFigures
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;
    private const string Blue = "#0072B2", Orange = "#D55E00", Green = "#009E73", Grey = "#888888";

    /// <summary>Writes tiling-tau.svg, referral.svg and readout-thresholds.svg into <paramref name="directory"/>; returns the paths.</summary>
    public static string[] Write(string directory, TilingFit tiling, double maxTriggerRate, int[] truth, float[][] referralProbabilities,
        double referralThreshold, int[] thresholds, int baseThreshold, IReadOnlyList<string> classes, string caption)
    {
        Directory.CreateDirectory(directory);
        var files = new (string Name, string Svg)[]
        {
            ("tiling-tau.svg", TilingSvg(tiling, maxTriggerRate, caption)),
            ("referral.svg", ReferralSvg(truth, referralProbabilities, referralThreshold, caption)),
            ("readout-thresholds.svg", ThresholdsSvg(thresholds, baseThreshold, classes, caption)),
        };
        return files.Select(f =>
        {
            string path = Path.Combine(directory, f.Name);
            WholeFile.Write(path, Encoding.UTF8.GetBytes(f.Svg), WholeFileOptions.UserOutput);
            return path;
        }).ToArray();
    }

    public static string TilingSvg(TilingFit fit, double maxTriggerRate, string caption)
    {
        var f1 = fit.Curve.Select(p => (p.Tau, p.MacroF1)).ToList();
        var rate = fit.Curve.Select(p => (p.Tau, p.TriggerRate)).ToList();
        // Each curve is a step function of τ: it holds until the next candidate and runs on to τ = 1.
        if (fit.Curve.Count > 0) { f1.Add((1, fit.Curve[^1].MacroF1)); rate.Add((1, fit.Curve[^1].TriggerRate)); }
        return LineChart($"Tiling τ on validation: τ = {fit.Tau:F3}, trigger rate {100 * fit.TriggerRate:F1}%, macro-F1 {fit.MacroF1Plain:F3} → {fit.MacroF1WithTiling:F3}",
            "τ (tile when the top probability is under τ)",
            [("validation macro-F1", Blue, f1, true), ("trigger rate", Orange, rate, true)],
            [(fit.Tau, "chosen τ", Green)], maxTriggerRate, caption);
    }

    public static string ReferralSvg(int[] truth, float[][] probabilities, double threshold, string caption)
    {
        var sens = new List<(double, double)>(); var spec = new List<(double, double)>();
        for (int i = 0; i <= 200; i++)
        {
            double t = i / 200.0;
            var m = ReferralMetrics.Compute(truth, probabilities, t);
            sens.Add((t, m.Sensitivity)); spec.Add((t, m.Specificity));
        }
        var at = ReferralMetrics.Compute(truth, probabilities, threshold);
        return LineChart($"Referral on validation: threshold {threshold:F3}, sensitivity {100 * at.Sensitivity:F1}%, specificity {100 * at.Specificity:F1}%",
            "threshold on p(akiec) + p(bcc) + p(mel)",
            [("sensitivity (malignant referred)", Orange, sens, false), ("specificity (benign not referred)", Blue, spec, false)],
            [(threshold, "chosen", Green)], null, caption);
    }

    public static string ThresholdsSvg(int[] thresholds, int baseThreshold, IReadOnlyList<string> classes, string caption)
    {
        const int left = 60, top = 40, height = 220, bar = 44, gap = 16;
        int width = left + classes.Count * (bar + gap) + 40;
        double yMax = 2.0 * baseThreshold;
        double Y(double v) => top + height * (1 - v / yMax);
        var sb = new StringBuilder();
        Header(sb, width, top + height + 70);
        Text(sb, left, 20, $"Per-class readout thresholds θ_k (common θ = {baseThreshold}; lower θ_k = more weight on class k's evidence)", "start", 13);
        for (int i = 0; i <= 4; i++)
        {
            double v = yMax * i / 4;
            Line(sb, left, Y(v), width - 30, Y(v), "#dddddd");
            Text(sb, left - 6, Y(v) + 4, v.ToString("0", Inv), "end");
        }
        for (int c = 0; c < classes.Count; c++)
        {
            double x = left + gap / 2.0 + c * (bar + gap), y = Y(thresholds[c]);
            sb.Append(Inv, $"<rect x=\"{x:F1}\" y=\"{y:F1}\" width=\"{bar}\" height=\"{top + height - y:F1}\" fill=\"{(thresholds[c] < baseThreshold ? Orange : thresholds[c] > baseThreshold ? Blue : Grey)}\"/>");
            Text(sb, x + bar / 2.0, y - 4, thresholds[c].ToString(Inv), "middle");
            Text(sb, x + bar / 2.0, top + height + 16, classes[c], "middle");
        }
        Line(sb, left, Y(baseThreshold), width - 30, Y(baseThreshold), "#000000", dash: true);
        Line(sb, left, top, left, top + height, "#000000");
        Text(sb, left, top + height + 40, caption, "start", 11);
        sb.Append("</svg>\n");
        return sb.ToString();
    }

    /// <summary>x and y both in [0, 1]; optional vertical markers and a dashed horizontal budget line.</summary>
    private static string LineChart(string title, string xLabel, (string Name, string Color, List<(double X, double Y)> Points, bool Steps)[] series,
        (double X, string Label, string Color)[] markers, double? budget, string caption)
    {
        const int left = 60, top = 40, w = 520, h = 300;
        double X(double v) => left + w * v;
        double Y(double v) => top + h * (1 - v);
        var sb = new StringBuilder();
        Header(sb, left + w + 200, top + h + 80);
        Text(sb, left, 20, title, "start", 13);
        for (int i = 0; i <= 10; i++)
        {
            double v = i / 10.0;
            Line(sb, X(v), top, X(v), top + h, "#eeeeee");
            Line(sb, left, Y(v), left + w, Y(v), "#eeeeee");
            Text(sb, X(v), top + h + 16, v.ToString("0.0", Inv), "middle");
            Text(sb, left - 6, Y(v) + 4, v.ToString("0.0", Inv), "end");
        }
        Line(sb, left, top + h, left + w, top + h, "#000000");
        Line(sb, left, top, left, top + h, "#000000");
        Text(sb, left + w / 2.0, top + h + 36, xLabel, "middle");
        if (budget is double b)
        {
            Line(sb, left, Y(b), left + w, Y(b), Orange, dash: true);
            Text(sb, left + w - 4, Y(b) - 4, $"trigger budget {100 * b:F0}%", "end", 11);
        }
        int legend = 0;
        foreach (var (name, color, points, steps) in series)
        {
            var path = new StringBuilder();
            for (int i = 0; i < points.Count; i++)
            {
                var (x, y) = points[i];
                if (i == 0) path.Append(Inv, $"M{X(x):F1},{Y(y):F1}");
                else if (steps) path.Append(Inv, $" H{X(x):F1} V{Y(y):F1}");
                else path.Append(Inv, $" L{X(x):F1},{Y(y):F1}");
            }
            sb.Append(Inv, $"<path d=\"{path}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"/>");
            Line(sb, left + w + 14, top + 10 + 18 * legend, left + w + 34, top + 10 + 18 * legend, color, width: 3);
            Text(sb, left + w + 40, top + 14 + 18 * legend, name, "start", 11);
            legend++;
        }
        foreach (var (x, label, color) in markers)
        {
            Line(sb, X(x), top, X(x), top + h, color, width: 2);
            Text(sb, X(x) + 4, top + 12, $"{label} {x:F3}", "start", 11);
        }
        Text(sb, left, top + h + 60, caption, "start", 11);
        sb.Append("</svg>\n");
        return sb.ToString();
    }

    private static void Header(StringBuilder sb, int width, int height) =>
        sb.Append(Inv, $"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" font-family=\"sans-serif\" font-size=\"12\"><rect width=\"100%\" height=\"100%\" fill=\"white\"/>");

    private static void Line(StringBuilder sb, double x1, double y1, double x2, double y2, string color, bool dash = false, double width = 1) =>
        sb.Append(Inv, $"<line x1=\"{x1:F1}\" y1=\"{y1:F1}\" x2=\"{x2:F1}\" y2=\"{y2:F1}\" stroke=\"{color}\" stroke-width=\"{width}\"{(dash ? " stroke-dasharray=\"5,4\"" : "")}/>");

    private static void Text(StringBuilder sb, double x, double y, string text, string anchor, int size = 12) =>
        sb.Append(Inv, $"<text x=\"{x:F1}\" y=\"{y:F1}\" text-anchor=\"{anchor}\" font-size=\"{size}\">{WebUtility.HtmlEncode(text)}</text>");
}
