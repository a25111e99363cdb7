using System.CommandLine;
using System.Globalization;
using QanaEdge.Imaging;
using QanaEdge.Model;
using QanaEdge.Model.Packaging;
using QanaEdge.Training.Data;
using QanaEdge.Training.Evaluation;

namespace QanaEdge.Cli.Commands;

/// <summary>
/// <c>qana evaluate --images DIR --labels CSV [--model PKG] [--json FILE] [--report DIR] [--limit N] [--symmetries]</c>:
/// classifies every labelled image through the device's own path (<see cref="LesionClassifier"/>: decode, the crop
/// the package records (<see cref="InputSpec.Crop"/>; training writes the centred square into every package, the
/// shipped one included), integer engine, tiling fallback, referral) and reports the metrics of docs/evaluation.md.
/// Images the pipeline refuses, and files that cannot be read, are left out of n and listed on standard error, one line
/// each with the reason (a file over the decoder's size limit is refused from its size, before it is read). A progress bar runs on standard error when it is
/// a terminal; it is erased before anything else is written there, so a failure is still one line.
/// </summary>
public sealed class EvaluateCommand : IVerb
{
    public Command Create(CliContext context)
    {
        var images = new Option<string>("--images") { Description = "folder of the images (IMAGE_ID.jpg)", Required = true };
        var labels = new Option<string>("--labels") { Description = "label CSV in the HAM10000 format (image_id, dx; other columns ignored)", Required = true };
        var model = new Option<string?>("--model") { Description = "model package (.qana); default: firmware-models/" };
        var json = new Option<string?>("--json") { Description = "write the metrics as JSON to FILE ('-' for standard output)" };
        var report = new Option<string?>("--report") { Description = "write an HTML report (index.html with plots) into DIR" };
        var limit = new Option<int?>("--limit") { Description = "evaluate only the first N labelled images" };
        var symmetries = new Option<bool>("--symmetries") { Description = "instead of tiling, average an unsure view with its 7 rotations and mirrors" };
        var command = new Command("evaluate", "Classify labelled images and report top-1, macro-F1, balanced accuracy, AUC, confusion, referral.")
            { images, labels, model, json, report, limit, symmetries };
        command.SetAction(parse =>
        {
            int? max = parse.GetValue(limit);
            if (max is <= 0) throw new UsageException("--limit must be a positive number");
            // Output paths are checked before the images are read and classified, not after.
            if (parse.GetValue(json) is string target && target != "-")
            {
                Files.CheckWritable(target, "--json");
                // The metrics would replace the labels they were computed from, after the whole run (a link to the labels
                // too: the paths alone were compared).
                Files.RefuseInputAsOutput(target, "--json", parse.GetRequiredValue(labels), "--labels", "the metrics would overwrite the labels");
            }
            if (parse.GetValue(report) is string emptyDir) Files.RefuseEmpty(emptyDir, "--report");
            if (parse.GetValue(report) is string reportDir && File.Exists(reportDir))
                throw new CommandFailedException($"--report '{reportDir}' is a file; it names the folder the report goes into");
            IReadOnlyList<Ham10000Row> rows;
            try { rows = Ham10000Index.Load(parse.GetRequiredValue(images), parse.GetRequiredValue(labels)); }
            catch (DatasetException e) { throw new CommandFailedException(e.Message); }
            if (max is int m && m < rows.Count) rows = rows.Take(m).ToArray();

            string packagePath = DefaultModel.Locate(parse.GetValue(model));
            ModelPackage package = Files.LoadModel(packagePath);
            // The report folder is made before the images are classified (the labels and the model have loaded, so
            // little else can fail first): one that cannot be made used to fail only after the whole run.
            if (parse.GetValue(report) is string folder)
            {
                try { Directory.CreateDirectory(folder); }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    throw new CommandFailedException($"cannot create the report folder '{folder}': {Cli.OneLine(e.Message)}");
                }
            }
            var options = new ClassifierOptions { Symmetries = parse.GetValue(symmetries) };
            var summary = Evaluate(package, packagePath, rows, parse.GetValue(labels)!, ProgressFor(context), options);
            foreach (var r in summary.Rejected)
                context.Err.WriteLine($"qana: {r.ImageId}: rejected ({r.Reason}): {r.Message}");

            // The figures go to standard output before any file is written, and each file is tried even when the other
            // failed: the JSON file was written first, so one that could not be (a read-only folder, a full disk) lost
            // the figures of the whole run, with the HTML report not even tried.
            string? jsonPath = parse.GetValue(json);
            string jsonText = summary.ToJson();
            if (jsonPath == "-") context.Out.WriteLine(jsonText);
            else context.Out.Write(Text(summary));
            context.Out.Flush();
            CommandFailedException? firstFailure = null;
            if (jsonPath is not null && jsonPath != "-")
            {
                try { Files.WriteAtomically(jsonPath, System.Text.Encoding.UTF8.GetBytes(jsonText + "\n")); }
                catch (CommandFailedException e) { firstFailure = e; }
            }
            if (parse.GetValue(report) is string dir)
            {
                try
                {
                    string html = HtmlReport.Write(dir, summary);
                    if (jsonPath != "-") context.Out.WriteLine($"report       {html}");
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    firstFailure ??= new CommandFailedException($"cannot write the report into '{dir}': {Cli.OneLine(e.Message)}");
                }
            }
            if (firstFailure is not null) throw firstFailure;
            return Cli.Ok;
        });
        return command;
    }

    /// <summary>Runs the classifier over the rows. Exposed for tests and for the training tools.</summary>
    public static EvaluationSummary Evaluate(ModelPackage package, string packagePath, IReadOnlyList<Ham10000Row> rows,
        string labelsPath, IProgressSink? progress = null, ClassifierOptions? options = null)
    {
        options ??= ClassifierOptions.Default;
        int[] toCanonical = package.Manifest.Classes.Select(Classes.IndexOf).ToArray();
        if (toCanonical.Length != Classes.Count || toCanonical.Any(i => i < 0) || toCanonical.Distinct().Count() != Classes.Count)
            throw new CommandFailedException($"the package's classes ({string.Join(",", package.Manifest.Classes)}) are not the seven HAM10000 classes");

        using var engine = LesionClassifier.CreateEngine(package);
        var classifier = new LesionClassifier(package, engine, options);
        var evaluated = new List<EvaluatedImage>(rows.Count);
        var rejected = new List<RejectedImage>();
        try
        {
            for (int i = 0; i < rows.Count; i++)
            {
                var row = rows[i];
                try
                {
                    // Refused from its size before it is read, as classify and the daemon do.
                    byte[] bytes = ImageDecoder.ReadFile(row.ImagePath, options.Limits);
                    LesionResult r = classifier.Classify(bytes);
                    var p = new float[Classes.Count];
                    for (int k = 0; k < toCanonical.Length; k++) p[toCanonical[k]] = r.Probabilities[k];
                    evaluated.Add(new EvaluatedImage(row.ImageId, row.ClassIndex, p, Classes.IndexOf(r.Label), r.Refer, r.Tiled, r.LatencyMs, r.Symmetrized, row.LesionId));
                }
                catch (ImageRejectedException e) { rejected.Add(new RejectedImage(row.ImageId, e.ReasonCode, Cli.OneLine(e.Message))); }
                // A file that cannot be read (a permission, EIO, a folder or nothing where the listing found the file)
                // is left out like a refused one, as classify goes past it: it used to end the run, losing every figure.
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    rejected.Add(new RejectedImage(row.ImageId, RejectedImage.Unreadable, Cli.OneLine(e.Message)));
                }
                progress?.Report(i + 1, rows.Count);
            }
        }
        finally { progress?.Done(); }
        // The first one's message too: the reason alone ("unreadable") did not say whether a permission or the disk failed.
        if (evaluated.Count == 0)
            throw new CommandFailedException($"every one of the {rows.Count} images was rejected (first: {rejected[0].ImageId}, {rejected[0].Reason}: {rejected[0].Message})");

        var m = package.Manifest;
        var context = new Dictionary<string, string>
        {
            ["model"] = $"{m.ModelId} {m.Version}",
            ["package"] = packagePath,
            ["labels"] = labelsPath,
            ["engine"] = engine.Name,
            ["evaluated (UTC)"] = DateTime.UtcNow.ToString("yyyy-MM-dd HH:mm", CultureInfo.InvariantCulture),
        };
        context["fallback"] = options.Symmetries
            ? string.Create(CultureInfo.InvariantCulture, $"rotations and mirrors under a top probability of {options.SymmetryTau}")
            : !options.Tiling ? "none"
            // The classifier tiles a view whose top probability is under τ, which no probability is when τ is 0.
            : m.Calibration.TilingTau > 0 ? "four tiles under the package's τ" : "off: the package's τ is 0, so no view is tiled";
        return EvaluationSummary.Create(evaluated, rejected, context);
    }

    private static string Text(EvaluationSummary s)
    {
        static string P(double v) => double.IsFinite(v) ? (100 * v).ToString("F1", CultureInfo.InvariantCulture) + "%" : "n/a";
        var m = s.Metrics;
        var sb = new System.Text.StringBuilder();
        int unreadable = s.UnreadableCount;
        sb.Append($"images       {s.N} evaluated, {s.Rejected.Count} rejected{(unreadable > 0 ? $" ({unreadable} could not be read)" : "")}\n");
        string I(Interval i) => double.IsNaN(i.Low) ? " (no interval: fewer than two lesions)" : $" (95% interval {P(i.Low)}-{P(i.High)}, bootstrap over {s.IntervalUnit})";
        sb.Append($"top-1        {P(m.Top1)}{I(s.Intervals.Top1)}\nmacro-F1     {P(m.MacroF1)}{I(s.Intervals.MacroF1)}\n");
        sb.Append($"balanced acc {P(m.BalancedAccuracy)}{I(s.Intervals.BalancedAccuracy)}\n");
        sb.Append($"macro AUC    {(double.IsFinite(m.AucMacro) ? m.AucMacro.ToString("F3", CultureInfo.InvariantCulture) : "n/a")}\n");
        sb.Append($"referral     sensitivity {P(s.Referral.Sensitivity)}, specificity {P(s.Referral.Specificity)}\n");
        sb.Append($"tiling       {P(s.TilingTriggerRate)} of images\n");
        if (s.SymmetryTriggerRate > 0) sb.Append($"symmetries   {P(s.SymmetryTriggerRate)} of images\n");
        sb.Append($"latency p50  {s.LatencyMsP50.ToString("F2", CultureInfo.InvariantCulture)} ms\n");
        return sb.ToString();
    }

    private static IProgressSink? ProgressFor(CliContext context) =>
        ReferenceEquals(context.Err, Console.Error) && !Console.IsErrorRedirected ? new ConsoleProgressBar(context.Err, "evaluate", ProgressLine.Columns(context.Err)) : null;
}

/// <summary>Receives progress of a long loop.</summary>
public interface IProgressSink
{
    void Report(int done, int total);
    /// <summary>The loop ended (normally or not): erase whatever was drawn.</summary>
    void Done();
}

/// <summary>A one-line progress bar redrawn in place with a carriage return, at most ten times a second.</summary>
/// <param name="columns">The terminal's width (0: unknown): the bar is cut to one column less, since on a narrower terminal
/// the line wrapped and each redraw left a row behind (the carriage return goes back only to the wrapped row).</param>
public sealed class ConsoleProgressBar(TextWriter writer, string label, int columns = 0) : IProgressSink
{
    private readonly System.Diagnostics.Stopwatch _clock = System.Diagnostics.Stopwatch.StartNew();
    private long _lastDrawMs = -1000;
    private int _width;

    public void Report(int done, int total)
    {
        long now = _clock.ElapsedMilliseconds;
        if (done < total && now - _lastDrawMs < 100) return;
        _lastDrawMs = now;
        string line = ProgressLine.Fit(Line(label, done, total, now), columns);
        _width = Math.Max(_width, line.Length);
        writer.Write("\r" + line.PadRight(_width));
        writer.Flush();
    }

    /// <summary>
    /// The bar after <paramref name="elapsedMs"/> of work: the ETA is mm:ss, with the hours in front from an hour on (the
    /// mm:ss format alone wrapped at the hour: a run with 75 minutes to go said 15:00).
    /// </summary>
    internal static string Line(string label, int done, int total, long elapsedMs)
    {
        double frac = total == 0 ? 1 : (double)done / total;
        int filled = (int)(frac * 30);
        var eta = TimeSpan.FromSeconds(Math.Round(done == 0 ? 0 : elapsedMs / 1000.0 / done * (total - done)));
        string remaining = eta.TotalHours >= 1
            ? string.Create(CultureInfo.InvariantCulture, $"{(long)eta.TotalHours}:{eta.Minutes:D2}:{eta.Seconds:D2}")
            : string.Create(CultureInfo.InvariantCulture, $"{eta.Minutes:D2}:{eta.Seconds:D2}");
        return $"{label} [{new string('#', filled)}{new string('.', 30 - filled)}] {done}/{total} {(100 * frac).ToString("F0", CultureInfo.InvariantCulture)}% ETA {remaining}";
    }

    public void Done()
    {
        if (_width == 0) return;
        writer.Write("\r" + new string(' ', _width) + "\r");
        writer.Flush();
        _width = 0;
    }
}
