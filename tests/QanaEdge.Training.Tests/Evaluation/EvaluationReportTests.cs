using System.Text.Json;
using System.Xml.Linq;
using QanaEdge.Training.Evaluation;

namespace QanaEdge.Training.Tests.Evaluation;

public class EvaluationReportTests
{
    private static EvaluationSummary Sample()
    {
        var images = new List<EvaluatedImage>();
        var rng = new QanaEdge.Training.Data.SeededRandom(2);
        for (int i = 0; i < 70; i++)
        {
            int truth = i % 7;
            var p = new float[7];
            for (int c = 0; c < 7; c++) p[c] = (float)rng.NextDouble() + (c == truth ? 0.8f : 0f);
            float sum = p.Sum();
            for (int c = 0; c < 7; c++) p[c] /= sum;
            int pred = ClassificationMetrics.ArgMax(p);
            bool refer = p[0] + p[1] + p[4] >= 0.4;
            images.Add(new EvaluatedImage($"ISIC_{i:D7}", truth, p, pred, refer, i % 10 == 0, 1.0 + i));
        }
        return EvaluationSummary.Create(images, [new RejectedImage("ISIC_bad", "truncated")],
            new Dictionary<string, string> { ["model"] = "test <model> & co" });
    }

    [Fact]
    public void Json_has_the_contract_fields_with_the_computed_values()
    {
        var s = Sample();
        using var doc = JsonDocument.Parse(s.ToJson());
        var root = doc.RootElement;
        foreach (var field in new[] { "n", "top1", "macro_f1", "balanced_accuracy", "auc_macro", "per_class", "confusion", "tiling_trigger_rate", "latency_ms_p50", "referral" })
            Assert.True(root.TryGetProperty(field, out _), $"missing {field}");
        Assert.Equal(70, root.GetProperty("n").GetInt32());
        Assert.Equal(s.Metrics.Top1, root.GetProperty("top1").GetDouble(), 6);
        Assert.Equal(s.Metrics.MacroF1, root.GetProperty("macro_f1").GetDouble(), 6);
        Assert.Equal(0.1, root.GetProperty("tiling_trigger_rate").GetDouble(), 9);
        Assert.Equal(35.5, root.GetProperty("latency_ms_p50").GetDouble(), 9); // median of 1..70
        var perClass = root.GetProperty("per_class");
        Assert.Equal(QanaEdge.Model.Classes.Codes, perClass.EnumerateObject().Select(p => p.Name));
        Assert.Equal(10, perClass.GetProperty("mel").GetProperty("support").GetInt32());
        var confusion = root.GetProperty("confusion");
        Assert.Equal(7, confusion.GetArrayLength());
        Assert.Equal(70, confusion.EnumerateArray().Sum(r => r.EnumerateArray().Sum(x => x.GetInt32())));
        Assert.Equal(s.Referral.Sensitivity, root.GetProperty("referral").GetProperty("sensitivity").GetDouble(), 6);
        Assert.Equal(1, root.GetProperty("rejected").GetInt32());
    }

    /// <summary>
    /// The report lists each rejected image with its reason and the decoder's or the file system's words, and says so
    /// when it stops listing: past 200 images the rest were dropped without a word, under a count that named them all.
    /// </summary>
    [Fact]
    public void Html_report_lists_rejected_images_with_their_detail_and_says_when_it_stops()
    {
        var s = Sample();
        var rejected = Enumerable.Range(0, 203).Select(i => new RejectedImage($"ISIC_r{i:D3}", i == 0 ? RejectedImage.Unreadable : "truncated",
            i == 0 ? "Input/output error : '/data/ISIC_r000.jpg'" : "premature end of data")).ToList();
        var html = HtmlReport.Render(EvaluationSummary.Create(s.Images, rejected));
        Assert.Contains("<tr><th class=\"l\">images rejected</th><td>203 (1 could not be read)</td></tr>", html);
        Assert.Contains("<tr><td class=\"l\">ISIC_r000</td><td class=\"l\">unreadable</td><td class=\"l\">Input/output error : &#39;/data/ISIC_r000.jpg&#39;</td></tr>", html);
        Assert.Contains("ISIC_r199", html);
        Assert.DoesNotContain("ISIC_r200", html);
        Assert.Contains("The first 200 of 203 rejected images are listed here", html);
        Assert.DoesNotContain("are listed here", HtmlReport.Render(s));
    }

    [Fact]
    public void Html_report_is_self_contained_with_three_well_formed_svgs()
    {
        var html = HtmlReport.Render(Sample());
        Assert.DoesNotContain("<script", html, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("http://", html.Replace("http://www.w3.org/2000/svg", ""));
        Assert.DoesNotContain("https://", html);
        Assert.Contains("test &lt;model&gt; &amp; co", html);
        foreach (var cls in new[] { "confusion", "bars", "roc" })
        {
            int start = html.IndexOf($"<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"{cls}\"", StringComparison.Ordinal);
            Assert.True(start >= 0, $"no {cls} svg");
            int end = html.IndexOf("</svg>", start, StringComparison.Ordinal) + 6;
            var svg = XElement.Parse(html[start..end]); // well-formed XML
            Assert.NotEmpty(svg.Descendants());
        }
        // The heat map has one cell per class pair, the ROC plot one curve per class.
        var confusion = XElement.Parse(Extract(html, "confusion"));
        Assert.Equal(49, confusion.Descendants().Count(e => e.Name.LocalName == "rect"));
        var roc = XElement.Parse(Extract(html, "roc"));
        Assert.Equal(7, roc.Descendants().Count(e => e.Name.LocalName == "polyline"));
    }

    private static string Extract(string html, string cls)
    {
        int start = html.IndexOf($"class=\"{cls}\"", StringComparison.Ordinal);
        start = html.LastIndexOf("<svg", start, StringComparison.Ordinal);
        int end = html.IndexOf("</svg>", start, StringComparison.Ordinal) + 6;
        return html[start..end];
    }

    [Fact]
    public void Empty_runs_are_refused()
    {
        Assert.Throws<ArgumentException>(() => EvaluationSummary.Create([]));
    }
}
