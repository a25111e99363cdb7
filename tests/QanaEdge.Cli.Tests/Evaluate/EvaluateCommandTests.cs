using System.Text.Json;
using QanaEdge.Model;
using QanaEdge.Model.Packaging;
using QanaEdge.TestSupport;

namespace QanaEdge.Cli.Tests.Evaluate;

/// <summary>A random-weight QANA-shaped package and a labelled subset of the real HAM10000 images, shared by
/// the tests (building the package and classifying real JPEGs is the slow part).</summary>
public sealed class EvaluateFixture : IDisposable
{
    public string Dir { get; } = Directory.CreateTempSubdirectory("qana-evaluate-").FullName;
    public string Package { get; }
    public string Labels { get; }
    public string ImagesDir { get; }
    public int Count { get; }

    public EvaluateFixture()
    {
        string data = FindHam10000();
        ImagesDir = Path.Combine(data, "images");
        Package = Path.Combine(Dir, "model.qana");
        PackageWriter.Save(TestGraphs.QanaShaped(seed: 5), Package);
        // Two images of each class, with the metadata's extra columns kept (they must be ignored).
        var lines = File.ReadAllLines(Path.Combine(data, "labels.csv"));
        var header = lines[0].Split(',');
        int dx = Array.IndexOf(header, "dx");
        var picked = Classes.Codes.SelectMany(code => lines.Skip(1).Where(l => l.Split(',')[dx] == code).Take(2)).ToList();
        Count = picked.Count;
        Labels = Path.Combine(Dir, "subset.csv");
        File.WriteAllLines(Labels, picked.Prepend(lines[0]));
    }

    /// <summary>&lt;repo&gt;/../shared/data/ham10000: the nearest ancestor holding shared/data/ham10000.</summary>
    private static string FindHam10000()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            string candidate = Path.Combine(d.FullName, "shared", "data", "ham10000");
            if (File.Exists(Path.Combine(candidate, "labels.csv"))) return candidate;
        }
        throw new DirectoryNotFoundException("HAM10000 not found at <repo>/../shared/data/ham10000");
    }

    public void Dispose()
    {
        try { Directory.Delete(Dir, true); } catch (IOException) { }
    }
}

public class EvaluateCommandTests(EvaluateFixture f) : IClassFixture<EvaluateFixture>
{
    private static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter(); var e = new StringWriter();
        int code = QanaEdge.Cli.Cli.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    [Fact]
    public void Evaluates_real_images_and_writes_the_json_contract_and_the_report()
    {
        string json = Path.Combine(f.Dir, "r.json"), report = Path.Combine(f.Dir, "report");
        var (code, output, err) = Run("evaluate", "--images", f.ImagesDir, "--labels", f.Labels, "--model", f.Package, "--json", json, "--report", report);
        Assert.True(code == 0, err);
        Assert.Equal("", err);
        Assert.Contains("top-1", output);

        using var doc = JsonDocument.Parse(File.ReadAllText(json));
        var root = doc.RootElement;
        Assert.Equal(f.Count, root.GetProperty("n").GetInt32());
        foreach (var name in new[] { "top1", "macro_f1", "balanced_accuracy", "auc_macro", "tiling_trigger_rate", "latency_ms_p50" })
        {
            double v = root.GetProperty(name).GetDouble();
            Assert.InRange(v, 0, name == "latency_ms_p50" ? 1e6 : 1);
        }
        Assert.True(root.GetProperty("latency_ms_p50").GetDouble() > 0);
        Assert.Equal(0, root.GetProperty("symmetry_trigger_rate").GetDouble());
        var perClass = root.GetProperty("per_class");
        foreach (var code7 in Classes.Codes)
        {
            var c = perClass.GetProperty(code7);
            Assert.Equal(2, c.GetProperty("support").GetInt32());
            foreach (var metric in new[] { "precision", "recall", "f1" }) Assert.InRange(c.GetProperty(metric).GetDouble(), 0, 1);
        }
        var confusion = root.GetProperty("confusion");
        Assert.Equal(7, confusion.GetArrayLength());
        Assert.All(confusion.EnumerateArray(), row => Assert.Equal(2, row.EnumerateArray().Sum(x => x.GetInt32())));
        // top1 is the confusion diagonal over n.
        int diagonal = Enumerable.Range(0, 7).Sum(i => confusion[i][i].GetInt32());
        Assert.Equal((double)diagonal / f.Count, root.GetProperty("top1").GetDouble(), 6);
        var referral = root.GetProperty("referral");
        Assert.InRange(referral.GetProperty("sensitivity").GetDouble(), 0, 1);
        Assert.InRange(referral.GetProperty("specificity").GetDouble(), 0, 1);

        string html = File.ReadAllText(Path.Combine(report, "index.html"));
        Assert.Equal(3, html.Split("<svg ").Length - 1);
        Assert.DoesNotContain("<script", html);
    }

    /// <summary>
    /// --symmetries replaces tiling by the symmetry fallback, and symmetry_trigger_rate is the share of images the
    /// device's classifier with that option averaged over their rotations and mirrors.
    /// </summary>
    [Fact]
    public void Symmetries_replace_tiling_and_their_trigger_rate_is_reported()
    {
        var (code, output, err) = Run("evaluate", "--images", f.ImagesDir, "--labels", f.Labels, "--model", f.Package, "--json", "-", "--symmetries");
        Assert.True(code == 0, err);
        using var doc = JsonDocument.Parse(output);
        ModelPackage package = PackageReader.Load(f.Package);
        using var engine = QanaEdge.Imaging.LesionClassifier.CreateEngine(package);
        var classifier = new QanaEdge.Imaging.LesionClassifier(package, engine, new QanaEdge.Imaging.ClassifierOptions { Symmetries = true });
        string[] lines = File.ReadAllLines(f.Labels);
        int idColumn = Array.IndexOf(lines[0].Split(','), "image_id");
        string[] ids = lines.Skip(1).Select(l => l.Split(',')[idColumn]).ToArray();
        int fired = ids.Count(id => classifier.Classify(File.ReadAllBytes(Path.Combine(f.ImagesDir, id + ".jpg"))).Symmetrized);
        Assert.True(fired > 0, "random weights leave most views under 0.5: the fallback should have fired");
        Assert.Equal((double)fired / ids.Length, doc.RootElement.GetProperty("symmetry_trigger_rate").GetDouble(), 6);
        Assert.Equal(0, doc.RootElement.GetProperty("tiling_trigger_rate").GetDouble());
    }

    /// <summary>
    /// The report's fallback line follows the package's τ: with τ at 0 no view is ever tiled, and the line said "four
    /// tiles under the package's τ" all the same.
    /// </summary>
    [Fact]
    public void The_report_says_the_tiling_fallback_is_off_when_the_packages_tau_is_0()
    {
        string untiled = Path.Combine(f.Dir, "tau0.qana");
        PackageWriter.Save(QanaEdge.Training.Pipeline.DevicePredictions.WithCalibration(PackageReader.Load(f.Package), c => c.TilingTau = 0), untiled);
        foreach (var (package, expected, other) in new[]
        {
            (untiled, "off: the package&#39;s τ is 0, so no view is tiled", "four tiles"),
            (f.Package, "four tiles under the package&#39;s τ", "no view is tiled"),
        })
        {
            string report = Path.Combine(f.Dir, "report-" + Path.GetFileNameWithoutExtension(package));
            var (code, _, err) = Run("evaluate", "--images", f.ImagesDir, "--labels", f.Labels, "--model", package, "--limit", "2", "--report", report);
            Assert.True(code == 0, err);
            string html = File.ReadAllText(Path.Combine(report, "index.html"));
            Assert.Contains(expected, html);
            Assert.DoesNotContain(other, html);
        }
    }

    /// <summary>
    /// A --json file that passes the checks before the run but cannot be written at its end (here a name longer than
    /// the file system allows; a read-only folder or a full disk alike) fails in one line, after the figures are on
    /// standard output and the HTML report is written: the JSON was written first, so its failure lost the whole run.
    /// </summary>
    [Fact]
    public void A_json_file_that_cannot_be_written_leaves_the_figures_on_standard_output_and_the_report()
    {
        string json = Path.Combine(f.Dir, new string('j', 300) + ".json"), report = Path.Combine(f.Dir, "report-json-unwritable");
        var (code, output, err) = Run("evaluate", "--images", f.ImagesDir, "--labels", f.Labels, "--model", f.Package, "--limit", "2",
            "--json", json, "--report", report);
        new CliResult(code, output, err.ReplaceLineEndings("\n")).AssertOneLineError(1, $"cannot write '{json}'");
        Assert.Contains("images       2 evaluated, 0 rejected", output);
        Assert.Contains("top-1", output);
        Assert.True(File.Exists(Path.Combine(report, "index.html")));
        Assert.Contains($"report       {Path.Combine(report, "index.html")}", output);
    }

    [Fact]
    public void Json_to_standard_output_and_limit()
    {
        var (code, output, err) = Run("evaluate", "--images", f.ImagesDir, "--labels", f.Labels, "--model", f.Package, "--json", "-", "--limit", "3");
        Assert.True(code == 0, err);
        using var doc = JsonDocument.Parse(output);
        Assert.Equal(3, doc.RootElement.GetProperty("n").GetInt32());
    }

    [Fact]
    public void Bad_input_gives_one_line_and_the_right_exit_code()
    {
        var (code, _, err) = Run("evaluate", "--images", f.ImagesDir, "--labels", Path.Combine(f.Dir, "missing.csv"), "--model", f.Package);
        Assert.Equal(1, code);
        Assert.Single(err.TrimEnd('\n').Split('\n'));
        Assert.Contains("label file not found", err);

        string badDx = Path.Combine(f.Dir, "bad.csv");
        File.WriteAllText(badDx, "image_id,dx\nISIC_0024306,melanoma\n");
        (code, _, err) = Run("evaluate", "--images", f.ImagesDir, "--labels", badDx, "--model", f.Package);
        Assert.Equal(1, code);
        Assert.Contains("melanoma", err);
        Assert.DoesNotContain(" at ", err);

        (code, _, err) = Run("evaluate", "--labels", f.Labels);
        Assert.Equal(2, code);
        (code, _, _) = Run("evaluate", "--images", f.ImagesDir, "--labels", f.Labels, "--model", f.Package, "--limit", "0");
        Assert.Equal(2, code);
        (code, _, err) = Run("evaluate", "--images", f.ImagesDir, "--labels", f.Labels, "--model", Path.Combine(f.Dir, "none.qana"));
        Assert.Equal(1, code);
        Assert.Contains("none.qana", err);
    }

    /// <summary>A report folder that cannot be made fails before any image is classified, as an unwritable --json
    /// file does; it used to fail only after the whole run, with the file system's message alone.</summary>
    [Fact]
    public void A_report_folder_that_cannot_be_made_fails_before_the_run()
    {
        string report = Path.Combine(f.Labels, "report");   // under a file: no folder can be made there
        var (code, output, err) = Run("evaluate", "--images", f.ImagesDir, "--labels", f.Labels, "--model", f.Package, "--report", report);
        Assert.Equal(1, code);
        Assert.Equal("", output);
        string line = Assert.Single(err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith($"qana: cannot create the report folder '{report}'", line);
    }

    /// <summary>A file that is not a CSV given for --labels (an image, an archive) is one short, printable line: the
    /// header it "found" was echoed whole, control bytes and all (megabytes when the file had no line break).</summary>
    [Fact]
    public void A_binary_file_given_for_the_labels_is_one_short_printable_line()
    {
        var bytes = new byte[200_000];
        new Random(7).NextBytes(bytes);
        for (int i = 0; i < bytes.Length; i++) if (bytes[i] is (byte)'\n' or (byte)'\r' or (byte)'"' or (byte)',') bytes[i] = 0x1b;
        string labels = Path.Combine(f.Dir, "binary.csv");
        File.WriteAllBytes(labels, bytes);
        var (code, _, err) = Run("evaluate", "--images", f.ImagesDir, "--labels", labels, "--model", f.Package);
        Assert.Equal(1, code);
        string line = Assert.Single(err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("the header must name the columns image_id and dx", line);
        Assert.True(line.Length < 400, $"{line.Length} characters");
        Assert.DoesNotContain(line, char.IsControl);
    }

    /// <summary>A label file with classic Mac line ends (CR alone, Excel's "CSV (Macintosh)") reads like one with LF or
    /// CRLF: the reader dropped every CR, so the whole file was one header record ("has a header but no rows").</summary>
    [Fact]
    public void Labels_with_carriage_returns_alone_as_line_ends_are_read()
    {
        string labels = Path.Combine(f.Dir, "mac.csv");
        File.WriteAllText(labels, File.ReadAllText(f.Labels).ReplaceLineEndings("\r"));
        var (code, output, err) = Run("evaluate", "--images", f.ImagesDir, "--labels", labels, "--model", f.Package, "--json", "-", "--limit", "3");
        Assert.True(code == 0, err);
        using var doc = JsonDocument.Parse(output);
        Assert.Equal(3, doc.RootElement.GetProperty("n").GetInt32());
    }

    [Fact]
    public void Rejected_images_are_listed_not_counted()
    {
        string dir = Path.Combine(f.Dir, "mixed");
        Directory.CreateDirectory(dir);
        File.Copy(Path.Combine(f.ImagesDir, "ISIC_0024306.jpg"), Path.Combine(dir, "ISIC_0024306.jpg"), true);
        File.WriteAllText(Path.Combine(dir, "ISIC_text.jpg"), "not an image at all");
        string labels = Path.Combine(dir, "labels.csv");
        File.WriteAllText(labels, "image_id,dx\nISIC_0024306,nv\nISIC_text,mel\n");
        var (code, output, err) = Run("evaluate", "--images", dir, "--labels", labels, "--model", f.Package, "--json", "-");
        Assert.True(code == 0, err);
        using var doc = JsonDocument.Parse(output);
        Assert.Equal(1, doc.RootElement.GetProperty("n").GetInt32());
        Assert.Equal(1, doc.RootElement.GetProperty("rejected").GetInt32());
        Assert.Equal("qana: ISIC_text: rejected (not_an_image): no known image signature", Assert.Single(err.Split('\n', StringSplitOptions.RemoveEmptyEntries)));
    }

    /// <summary>
    /// A file that cannot be read is listed and left out like a refused image, and the run goes on: it used to end the
    /// whole run at that image ("cannot read ..."), losing every figure. The read error is a real EIO: the file is a
    /// link to /proc/self/mem, whose first page (address 0) is never mapped, so the kernel fails the read whoever runs.
    /// The figures are those of the same labels without the unreadable image.
    /// </summary>
    [Fact]
    public void An_unreadable_file_is_listed_and_left_out_and_the_run_goes_on()
    {
        string dir = Path.Combine(f.Dir, "eio");
        Directory.CreateDirectory(dir);
        string[] good = ["ISIC_0024306", "ISIC_0024307", "ISIC_0024308"];
        foreach (string id in good) File.Copy(Path.Combine(f.ImagesDir, id + ".jpg"), Path.Combine(dir, id + ".jpg"), true);
        File.WriteAllText(Path.Combine(dir, "ISIC_text.jpg"), "not an image at all");
        string eio = Path.Combine(dir, "ISIC_eio.jpg");
        if (!File.Exists(eio)) File.CreateSymbolicLink(eio, "/proc/self/mem");
        Assert.ThrowsAny<IOException>(() => File.ReadAllBytes(eio));
        string labels = Path.Combine(dir, "labels.csv"), readable = Path.Combine(dir, "readable.csv");
        File.WriteAllText(labels, "image_id,dx\nISIC_0024306,nv\nISIC_eio,mel\nISIC_0024307,nv\nISIC_text,bcc\nISIC_0024308,nv\n");
        File.WriteAllText(readable, "image_id,dx\nISIC_0024306,nv\nISIC_0024307,nv\nISIC_0024308,nv\n");
        string json = Path.Combine(dir, "r.json"), report = Path.Combine(dir, "report");

        var (code, output, err) = Run("evaluate", "--images", dir, "--labels", labels, "--model", f.Package, "--json", json, "--report", report);

        Assert.True(code == 0, err);
        string[] lines = err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, lines.Length);
        Assert.StartsWith("qana: ISIC_eio: rejected (unreadable): ", lines[0]);
        Assert.Contains("Input/output error", lines[0]);
        Assert.Equal("qana: ISIC_text: rejected (not_an_image): no known image signature", lines[1]);
        Assert.Contains("images       3 evaluated, 2 rejected (1 could not be read)\n", output);
        using var doc = JsonDocument.Parse(File.ReadAllText(json));
        var root = doc.RootElement;
        Assert.Equal(3, root.GetProperty("n").GetInt32());
        Assert.Equal(2, root.GetProperty("rejected").GetInt32());
        Assert.Equal(1, root.GetProperty("unreadable").GetInt32());
        string html = File.ReadAllText(Path.Combine(report, "index.html"));
        Assert.Contains("<td>2 (1 could not be read)</td>", html);
        Assert.Contains("<td class=\"l\">ISIC_eio</td><td class=\"l\">unreadable</td>", html);

        var (againCode, again, againErr) = Run("evaluate", "--images", dir, "--labels", readable, "--model", f.Package, "--json", "-");
        Assert.True(againCode == 0, againErr);
        using var without = JsonDocument.Parse(again);
        foreach (string name in new[] { "top1", "macro_f1", "balanced_accuracy", "tiling_trigger_rate" })
            Assert.Equal(without.RootElement.GetProperty(name).GetDouble(), root.GetProperty(name).GetDouble());
        Assert.Equal(without.RootElement.GetProperty("confusion").GetRawText(), root.GetProperty("confusion").GetRawText());
        Assert.Equal(without.RootElement.GetProperty("referral").GetRawText(), root.GetProperty("referral").GetRawText());
    }

    /// <summary>A run in which no image could be read fails in one line that gives the first one's reason and the
    /// system's words; it gave the reason alone ("unreadable"), which does not tell a permission from a failing disk.</summary>
    [Fact]
    public void A_run_with_no_readable_image_fails_in_one_line_with_the_first_ones_error()
    {
        string dir = Path.Combine(f.Dir, "none-readable");
        Directory.CreateDirectory(dir);
        foreach (string id in new[] { "ISIC_eio1", "ISIC_eio2" })
            if (!File.Exists(Path.Combine(dir, id + ".jpg"))) File.CreateSymbolicLink(Path.Combine(dir, id + ".jpg"), "/proc/self/mem");
        string labels = Path.Combine(dir, "labels.csv");
        File.WriteAllText(labels, "image_id,dx\nISIC_eio1,mel\nISIC_eio2,nv\n");
        var (code, output, err) = Run("evaluate", "--images", dir, "--labels", labels, "--model", f.Package, "--json", "-");
        Assert.Equal(1, code);
        Assert.Equal("", output);
        string line = Assert.Single(err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("qana: every one of the 2 images was rejected (first: ISIC_eio1, unreadable: Input/output error", line);
    }

    /// <summary>
    /// A file that was readable when the labels were listed and is not when its turn comes is left out with the reason
    /// and the rest are classified. Without root the file loses its permissions (chmod 000); root reads through those,
    /// so a folder takes the file's place after the listing, which the kernel refuses to read as a file.
    /// </summary>
    [Fact]
    public void A_file_that_becomes_unreadable_after_the_listing_is_left_out()
    {
        string dir = Path.Combine(f.Dir, "denied");
        Directory.CreateDirectory(dir);
        foreach (string id in new[] { "ISIC_0024306", "ISIC_0024307", "ISIC_0024308" })
            File.Copy(Path.Combine(f.ImagesDir, id + ".jpg"), Path.Combine(dir, id + ".jpg"), true);
        string labels = Path.Combine(dir, "labels.csv");
        File.WriteAllText(labels, "image_id,dx\nISIC_0024306,nv\nISIC_0024307,nv\nISIC_0024308,nv\n");
        var rows = QanaEdge.Training.Data.Ham10000Index.Load(dir, labels);
        string victim = Path.Combine(dir, "ISIC_0024307.jpg");
        if (!Environment.IsPrivilegedProcess && !OperatingSystem.IsWindows()) File.SetUnixFileMode(victim, UnixFileMode.None);
        else
        {
            File.Delete(victim);
            Directory.CreateDirectory(victim);
        }
        try
        {
            Assert.Throws<UnauthorizedAccessException>(() => File.ReadAllBytes(victim));
            var summary = QanaEdge.Cli.Commands.EvaluateCommand.Evaluate(PackageReader.Load(f.Package), f.Package, rows, labels);
            Assert.Equal(2, summary.N);
            Assert.Equal(["ISIC_0024306", "ISIC_0024308"], summary.Images.Select(i => i.ImageId));
            var rejected = Assert.Single(summary.Rejected);
            Assert.Equal(("ISIC_0024307", "unreadable"), (rejected.ImageId, rejected.Reason));
            Assert.Contains(victim, rejected.Message);
            Assert.Equal(1, summary.UnreadableCount);
        }
        finally
        {
            if (Directory.Exists(victim)) Directory.Delete(victim);
            else File.Delete(victim);
        }
    }

    /// <summary>A file over the decoder's size limit is refused from its size: a 3 GB one (sparse, no disk used)
    /// used to end the run, as reading it whole failed.</summary>
    [Fact]
    public void An_oversized_file_is_rejected_as_too_large_without_being_read()
    {
        string dir = Path.Combine(f.Dir, "huge");
        Directory.CreateDirectory(dir);
        File.Copy(Path.Combine(f.ImagesDir, "ISIC_0024306.jpg"), Path.Combine(dir, "ISIC_0024306.jpg"), true);
        using (var huge = new FileStream(Path.Combine(dir, "ISIC_huge.jpg"), FileMode.Create)) huge.SetLength(3L << 30);
        string labels = Path.Combine(dir, "labels.csv");
        File.WriteAllText(labels, "image_id,dx\nISIC_huge,mel\nISIC_0024306,nv\n");
        try
        {
            var (code, output, err) = Run("evaluate", "--images", dir, "--labels", labels, "--model", f.Package, "--json", "-");
            Assert.True(code == 0, err);
            using var doc = JsonDocument.Parse(output);
            Assert.Equal(1, doc.RootElement.GetProperty("n").GetInt32());
            Assert.Equal(1, doc.RootElement.GetProperty("rejected").GetInt32());
            string line = Assert.Single(err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
            Assert.StartsWith("qana: ISIC_huge: rejected (too_large): file is 3221225472 bytes", line);
        }
        finally { File.Delete(Path.Combine(dir, "ISIC_huge.jpg")); }
    }

    /// <summary>The progress bar's ETA shows its hours from an hour on: mm:ss alone wrapped, so 75 minutes to go read
    /// 15:00. (The bar is drawn only on a terminal; its line is computed from the counts and the time spent.)</summary>
    [Fact]
    public void The_progress_bars_eta_counts_hours()
    {
        // 100 of 1000 images in 500 s: 4500 s, 1 h 15 min, to go.
        Assert.Equal("evaluate [###...........................] 100/1000 10% ETA 1:15:00",
            QanaEdge.Cli.Commands.ConsoleProgressBar.Line("evaluate", 100, 1000, 500_000));
        Assert.EndsWith("] 500/1000 50% ETA 07:14", QanaEdge.Cli.Commands.ConsoleProgressBar.Line("evaluate", 500, 1000, 434_000));
        Assert.EndsWith("] 0/10 0% ETA 00:00", QanaEdge.Cli.Commands.ConsoleProgressBar.Line("evaluate", 0, 10, 0));
    }

    /// <summary>On a terminal narrower than the bar (about 60 columns) each draw is cut to one column less than its width:
    /// the whole line wrapped there, and every redraw left a row behind.</summary>
    [Fact]
    public void The_progress_bar_is_cut_to_the_terminal_width()
    {
        var err = new StringWriter();
        var bar = new QanaEdge.Cli.Commands.ConsoleProgressBar(err, "evaluate", columns: 40);
        bar.Report(10, 10);
        Assert.Equal("\r" + QanaEdge.Cli.Commands.ConsoleProgressBar.Line("evaluate", 10, 10, 0)[..39], err.ToString());
    }

    [Fact]
    public void Split_verb_writes_three_csvs_evaluate_can_read()
    {
        string outDir = Path.Combine(f.Dir, "splits");
        string data = Path.GetDirectoryName(f.ImagesDir)!;
        var (code, output, err) = Run("split", "--images", f.ImagesDir, "--labels", Path.Combine(data, "labels.csv"), "--out", outDir, "--seed", "3");
        Assert.True(code == 0, err);
        Assert.Contains("test", output);
        foreach (var part in new[] { "train.csv", "val.csv", "test.csv" })
            Assert.StartsWith("image_id,lesion_id,dx", File.ReadAllText(Path.Combine(outDir, part)));
        (code, output, err) = Run("evaluate", "--images", f.ImagesDir, "--labels", Path.Combine(outDir, "test.csv"), "--model", f.Package, "--limit", "2", "--json", "-");
        Assert.True(code == 0, err);
    }
}
