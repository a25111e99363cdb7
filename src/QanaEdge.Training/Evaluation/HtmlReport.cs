using System.Globalization;
using System.Net;
using System.Text;
using QanaEdge.Model;

namespace QanaEdge.Training.Evaluation;

/// <summary>
/// A self-contained evaluation report: one index.html with the figures, a confusion-matrix heat map, per-class
/// precision/recall/F1 bars and one-vs-rest ROC curves, all as inline SVG generated here. No script, no
/// external style sheet or font: it opens offline in any browser.
/// </summary>
public static class HtmlReport
{
    /// <summary>Class colours (colour-blind-safe Okabe–Ito palette), canonical class order.</summary>
    private static readonly string[] Palette = ["#E69F00", "#56B4E9", "#009E73", "#F0E442", "#D55E00", "#0072B2", "#CC79A7"];
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;
    /// <summary>How many rejected images the page lists by name.</summary>
    internal const int RejectedListed = 200;

    /// <summary>
    /// Writes DIR/index.html (the folder is created) and returns its path: whole (<see cref="WholeFile.Write"/>: beside
    /// it first, then renamed), so an earlier report is replaced whole or kept.
    /// </summary>
    public static string Write(string directory, EvaluationSummary summary)
    {
        Directory.CreateDirectory(directory);
        string path = Path.Combine(directory, "index.html");
        WholeFile.Write(path, new UTF8Encoding(false).GetBytes(Render(summary)), WholeFileOptions.UserOutput);
        return path;
    }

    public static string Render(EvaluationSummary s)
    {
        static string Ci(Interval i) => double.IsNaN(i.Low) ? "" : $" ({P(i.Low)}–{P(i.High)})";
        var m = s.Metrics;
        var sb = new StringBuilder();
        sb.Append("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>QanaEdge evaluation</title>\n<style>\n")
          .Append("body{font-family:sans-serif;margin:2em;color:#222;max-width:1100px}table{border-collapse:collapse;margin:1em 0}")
          .Append("td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}th{background:#f3f3f3}td.l,th.l{text-align:left}")
          .Append("figure{display:inline-block;margin:1em 2em 1em 0;vertical-align:top}figcaption{font-size:90%;color:#555;max-width:520px}")
          .Append("\n</style></head><body>\n<h1>QanaEdge evaluation</h1>\n");
        if (s.Context.Count > 0)
        {
            sb.Append("<table>");
            foreach (var (k, v) in s.Context) sb.Append($"<tr><th class=\"l\">{E(k)}</th><td class=\"l\">{E(v)}</td></tr>");
            sb.Append("</table>\n");
        }
        sb.Append("<h2>Summary</h2>\n<table>")
          .Append(Row("images evaluated", s.N.ToString(Inv)))
          .Append(Row("images rejected", s.Rejected.Count.ToString(Inv) + (s.UnreadableCount > 0 ? $" ({s.UnreadableCount.ToString(Inv)} could not be read)" : "")))
          .Append(Row("top-1 accuracy", P(m.Top1) + Ci(s.Intervals.Top1)))
          .Append(Row("macro-F1", P(m.MacroF1) + Ci(s.Intervals.MacroF1)))
          .Append(Row("balanced accuracy (mean recall)", P(m.BalancedAccuracy) + Ci(s.Intervals.BalancedAccuracy)))
          .Append(Row("macro AUC (one-vs-rest)", D(m.AucMacro)))
          .Append(Row("referral sensitivity (akiec+bcc+mel)", P(s.Referral.Sensitivity)))
          .Append(Row("referral specificity", P(s.Referral.Specificity)))
          .Append(Row("tiling trigger rate", P(s.TilingTriggerRate)))
          .Append(Row("symmetry trigger rate", P(s.SymmetryTriggerRate)))
          .Append(Row("latency p50 (ms per image)", s.LatencyMsP50.ToString("F2", Inv)))
          .Append("</table>\n");

        sb.Append($"<p>Intervals: 95 %, percentile bootstrap over {E(s.IntervalUnit)} ({BootstrapIntervals.DefaultResamples} resamples).</p>\n");

        sb.Append("<h2>Per class</h2>\n<table><tr><th class=\"l\">class</th><th>precision</th><th>recall</th><th>F1</th><th>AUC</th><th>support</th><th>predicted</th></tr>");
        foreach (var c in m.PerClass)
            sb.Append($"<tr><td class=\"l\">{E(c.Code)}</td><td>{P(c.Precision)}</td><td>{P(c.Recall)}</td><td>{P(c.F1)}</td><td>{D(c.Auc)}</td><td>{c.Support}</td><td>{c.Predicted}</td></tr>");
        sb.Append("</table>\n");

        sb.Append("<h2>Plots</h2>\n");
        sb.Append("<figure>").Append(ConfusionSvg(m)).Append("<figcaption>Confusion matrix: rows are the true class, columns the prediction; each cell shows the count, its shade the fraction of its row (the recall on the diagonal).</figcaption></figure>\n");
        sb.Append("<figure>").Append(BarsSvg(m)).Append("<figcaption>Precision, recall and F1 per class.</figcaption></figure>\n");
        sb.Append("<figure>").Append(RocSvg(s)).Append("<figcaption>ROC curves, one class against the rest, from the reported probabilities; the legend gives each AUC.</figcaption></figure>\n");

        if (s.Rejected.Count > 0)
        {
            sb.Append("<h2>Rejected images</h2>\n<table><tr><th class=\"l\">image</th><th class=\"l\">reason</th><th class=\"l\">detail</th></tr>");
            foreach (var r in s.Rejected.Take(RejectedListed))
                sb.Append($"<tr><td class=\"l\">{E(r.ImageId)}</td><td class=\"l\">{E(r.Reason)}</td><td class=\"l\">{E(r.Message)}</td></tr>");
            sb.Append("</table>\n");
            // The list stops so that a folder of bad files keeps the page small; it used to stop without a word.
            if (s.Rejected.Count > RejectedListed)
                sb.Append($"<p>The first {RejectedListed.ToString(Inv)} of {s.Rejected.Count.ToString(Inv)} rejected images are listed here; <code>qana evaluate</code> lists every one on standard error.</p>\n");
        }
        sb.Append("<p>Definitions: docs/evaluation.md in the QanaEdge repository.</p>\n</body></html>\n");
        return sb.ToString();
    }

    private static string Row(string k, string v) => $"<tr><th class=\"l\">{E(k)}</th><td>{E(v)}</td></tr>";
    private static string E(string s) => WebUtility.HtmlEncode(s);
    private static string P(double v) => double.IsFinite(v) ? (100 * v).ToString("F1", Inv) + "%" : "n/a";
    private static string D(double v) => double.IsFinite(v) ? v.ToString("F3", Inv) : "n/a";
    private static string F(double v) => v.ToString("0.##", Inv);

    internal static string ConfusionSvg(ClassificationMetrics m)
    {
        int k = m.ClassCount, cell = 48, left = 70, top = 40;
        int size = left + k * cell + 20;
        var sb = new StringBuilder();
        sb.Append($"<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"confusion\" width=\"{size}\" height=\"{top + k * cell + 50}\" font-family=\"sans-serif\" font-size=\"12\">");
        sb.Append("<title>Confusion matrix</title>");
        for (int t = 0; t < k; t++)
        {
            int rowTotal = 0;
            for (int p = 0; p < k; p++) rowTotal += m.Confusion[t, p];
            for (int p = 0; p < k; p++)
            {
                int count = m.Confusion[t, p];
                double frac = rowTotal == 0 ? 0 : (double)count / rowTotal;
                // White to dark blue by row fraction.
                int r = (int)Math.Round(255 - frac * (255 - 8)), g = (int)Math.Round(255 - frac * (255 - 48)), b = (int)Math.Round(255 - frac * (255 - 107));
                int x = left + p * cell, y = top + t * cell;
                sb.Append($"<rect x=\"{x}\" y=\"{y}\" width=\"{cell}\" height=\"{cell}\" fill=\"rgb({r},{g},{b})\" stroke=\"#fff\"><title>true {E(m.PerClass[t].Code)}, predicted {E(m.PerClass[p].Code)}: {count}</title></rect>");
                sb.Append($"<text x=\"{x + cell / 2}\" y=\"{y + cell / 2 + 4}\" text-anchor=\"middle\" fill=\"{(frac > 0.5 ? "#fff" : "#222")}\">{count}</text>");
            }
            sb.Append($"<text x=\"{left - 6}\" y=\"{top + t * cell + cell / 2 + 4}\" text-anchor=\"end\">{E(m.PerClass[t].Code)}</text>");
        }
        for (int p = 0; p < k; p++)
            sb.Append($"<text x=\"{left + p * cell + cell / 2}\" y=\"{top - 8}\" text-anchor=\"middle\">{E(m.PerClass[p].Code)}</text>");
        sb.Append($"<text x=\"{left + k * cell / 2}\" y=\"{top - 26}\" text-anchor=\"middle\" font-weight=\"bold\">predicted</text>");
        sb.Append($"<text x=\"14\" y=\"{top + k * cell / 2}\" text-anchor=\"middle\" font-weight=\"bold\" transform=\"rotate(-90 14 {top + k * cell / 2})\">true</text>");
        sb.Append("</svg>");
        return sb.ToString();
    }

    internal static string BarsSvg(ClassificationMetrics m)
    {
        int k = m.ClassCount, group = 60, bar = 16, left = 40, top = 20, height = 200;
        int width = left + k * group + 120;
        string[] names = ["precision", "recall", "F1"];
        string[] colours = ["#0072B2", "#E69F00", "#009E73"];
        var sb = new StringBuilder();
        sb.Append($"<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"bars\" width=\"{width}\" height=\"{top + height + 40}\" font-family=\"sans-serif\" font-size=\"12\">");
        sb.Append("<title>Per-class precision, recall and F1</title>");
        for (int tick = 0; tick <= 4; tick++)
        {
            double v = tick / 4.0;
            double y = top + height * (1 - v);
            sb.Append($"<line x1=\"{left}\" y1=\"{F(y)}\" x2=\"{left + k * group}\" y2=\"{F(y)}\" stroke=\"#ddd\"/>");
            sb.Append($"<text x=\"{left - 4}\" y=\"{F(y + 4)}\" text-anchor=\"end\">{F(v)}</text>");
        }
        for (int c = 0; c < k; c++)
        {
            var s = m.PerClass[c];
            double[] values = [s.Precision, s.Recall, s.F1];
            for (int j = 0; j < 3; j++)
            {
                double h = height * Math.Clamp(values[j], 0, 1);
                double x = left + c * group + 6 + j * bar;
                sb.Append($"<rect x=\"{F(x)}\" y=\"{F(top + height - h)}\" width=\"{bar - 2}\" height=\"{F(h)}\" fill=\"{colours[j]}\"><title>{E(s.Code)} {names[j]} {values[j].ToString("F3", Inv)}</title></rect>");
            }
            sb.Append($"<text x=\"{left + c * group + group / 2}\" y=\"{top + height + 16}\" text-anchor=\"middle\">{E(s.Code)}</text>");
        }
        for (int j = 0; j < 3; j++)
        {
            int y = top + 10 + j * 18, x = left + k * group + 15;
            sb.Append($"<rect x=\"{x}\" y=\"{y - 10}\" width=\"12\" height=\"12\" fill=\"{colours[j]}\"/><text x=\"{x + 18}\" y=\"{y}\">{names[j]}</text>");
        }
        sb.Append("</svg>");
        return sb.ToString();
    }

    internal static string RocSvg(EvaluationSummary s)
    {
        int left = 45, top = 15, plot = 300;
        int width = left + plot + 150, height = top + plot + 45;
        var sb = new StringBuilder();
        sb.Append($"<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"roc\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">");
        sb.Append("<title>ROC curves, one class against the rest</title>");
        sb.Append($"<rect x=\"{left}\" y=\"{top}\" width=\"{plot}\" height=\"{plot}\" fill=\"none\" stroke=\"#999\"/>");
        sb.Append($"<line x1=\"{left}\" y1=\"{top + plot}\" x2=\"{left + plot}\" y2=\"{top}\" stroke=\"#bbb\" stroke-dasharray=\"4 4\"/>");
        for (int tick = 0; tick <= 4; tick++)
        {
            double v = tick / 4.0;
            sb.Append($"<text x=\"{F(left + v * plot)}\" y=\"{top + plot + 15}\" text-anchor=\"middle\">{F(v)}</text>");
            sb.Append($"<text x=\"{left - 5}\" y=\"{F(top + plot * (1 - v) + 4)}\" text-anchor=\"end\">{F(v)}</text>");
        }
        sb.Append($"<text x=\"{left + plot / 2}\" y=\"{top + plot + 35}\" text-anchor=\"middle\">false-positive rate</text>");
        sb.Append($"<text x=\"12\" y=\"{top + plot / 2}\" text-anchor=\"middle\" transform=\"rotate(-90 12 {top + plot / 2})\">true-positive rate</text>");
        int k = s.Metrics.ClassCount;
        var scores = new double[s.Images.Count];
        var positive = new bool[s.Images.Count];
        int legend = 0;
        for (int c = 0; c < k; c++)
        {
            for (int i = 0; i < scores.Length; i++) { scores[i] = s.Images[i].Probabilities[c]; positive[i] = s.Images[i].Truth == c; }
            var (fpr, tpr, _) = RocAuc.Curve(scores, positive);
            string colour = Palette[c % Palette.Length];
            string code = s.Metrics.PerClass[c].Code;
            if (fpr.Length > 0)
            {
                var pts = string.Join(" ", fpr.Select((x, i) => $"{F(left + x * plot)},{F(top + plot * (1 - tpr[i]))}"));
                sb.Append($"<polyline points=\"{pts}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"><title>{E(code)}</title></polyline>");
            }
            int ly = top + 10 + legend++ * 18, lx = left + plot + 15;
            string auc = double.IsFinite(s.Metrics.PerClass[c].Auc) ? s.Metrics.PerClass[c].Auc.ToString("F3", Inv) : "n/a";
            sb.Append($"<line x1=\"{lx}\" y1=\"{ly - 4}\" x2=\"{lx + 14}\" y2=\"{ly - 4}\" stroke=\"{colour}\" stroke-width=\"3\"/><text x=\"{lx + 20}\" y=\"{ly}\">{E(code)} ({auc})</text>");
        }
        sb.Append("</svg>");
        return sb.ToString();
    }
}
