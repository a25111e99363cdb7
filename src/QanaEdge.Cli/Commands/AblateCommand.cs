using System.CommandLine;
using System.Globalization;
using QanaEdge.Model;
using QanaEdge.Training.Data;
using QanaEdge.Training.Engine;
using QanaEdge.Training.Network;
using QanaEdge.Training.Pipeline;

namespace QanaEdge.Cli.Commands;

/// <summary>
/// <c>qana ablate --data DIR --labels CSV [--out DIR] [--epochs N] [--qat-epochs N] [--seed S] [--table MD] [--json FILE]</c>:
/// the paper's Table IV on our split (baseline, + Ghost, + SA-ECA, + SE, + quantized head, + embedding SMOTE,
/// + incremental learning; cumulative), each row's package evaluated on the test split through the device's
/// path; writes a markdown table that names the schedule, and JSON.
/// </summary>
public sealed class AblateCommand : IVerb
{
    public Command Create(CliContext context)
    {
        var data = new Option<string>("--data") { Description = "folder of the images (IMAGE_ID.jpg)", Required = true };
        var labels = new Option<string>("--labels") { Description = "HAM10000 metadata CSV (image_id, lesion_id, dx)", Required = true };
        var output = new Option<string>("--out") { Description = "folder for the rows' packages, logs and reports", DefaultValueFactory = _ => "out/ablation" };
        var epochs = new Option<int>("--epochs") { Description = "float epochs of each trained row (cosine schedule length, no early stop)", DefaultValueFactory = _ => 60 };
        var qatEpochs = new Option<int>("--qat-epochs") { Description = "quantization-aware fine-tuning epochs per row", DefaultValueFactory = _ => 1 };
        var seed = new Option<ulong>("--seed") { Description = "seed of every row", DefaultValueFactory = _ => 1 };
        var threads = new Option<int>("--threads") { Description = "worker threads (default: all cores)", DefaultValueFactory = _ => Environment.ProcessorCount };
        var table = new Option<string>("--table") { Description = "markdown table to write", DefaultValueFactory = _ => "docs/ablation.md" };
        var json = new Option<string>("--json") { Description = "JSON to write", DefaultValueFactory = _ => "docs/ablation.json" };
        var commit = new Option<string?>("--commit") { Description = "source revision to name in the table" };
        var pooledHead = new Option<bool>("--pooled-head") { Description = "every row with the pooled head (global average of the final map before the linear head)" };
        var command = new Command("ablate", "Reproduce the paper's ablation table (Table IV) on the lesion-grouped split.")
        {
            data, labels, output, epochs, qatEpochs, seed, threads, table, json, commit, pooledHead,
        };
        command.SetAction(parse =>
        {
            int e = parse.GetValue(epochs), q = parse.GetValue(qatEpochs);
            if (e < 1 || q < 0) throw new UsageException("--epochs must be >= 1 and --qat-epochs >= 0");
            // Refused rather than raised to 1: seven rows silently on one thread take several times as long.
            if (parse.GetValue(threads) < 1) throw new UsageException("--threads must be at least 1");
            string images = parse.GetValue(data)!, csv = parse.GetValue(labels)!;
            if (ExpectedPath.FolderProblem(images) is { } noFolder) throw new CommandFailedException($"image folder '{images}' {noFolder}");
            if (ExpectedPath.FileProblem(csv) is { } noFile) throw new CommandFailedException($"labels file '{csv}' {noFile}");
            // The table and the JSON are written after every row has trained: a folder named there must fail now, and so
            // must one file named for both (the JSON replaced the table) or the labels named for either.
            string tablePath = parse.GetValue(table)!, jsonPath = parse.GetValue(json)!, outDir = parse.GetValue(output)!;
            // bench and evaluate take '-' for standard output; ablate prints its rows there, so '-' would have been a file named '-'.
            if (tablePath == "-" || jsonPath == "-")
                throw new UsageException($"{(tablePath == "-" ? "--table" : "--json")} '-': ablate writes its table and JSON to files (its rows go to standard output)");
            Files.RefuseFolder(tablePath, "--table");
            Files.RefuseFolder(jsonPath, "--json");
            Files.RefuseInputAsOutput(jsonPath, "--json", tablePath, "--table", "the JSON would replace the table");
            Files.RefuseInputAsOutput(tablePath, "--table", csv, "--labels", "the table would replace the labels");
            Files.RefuseInputAsOutput(jsonPath, "--json", csv, "--labels", "the JSON would replace the labels");
            // Made here with a message that names the option: an empty --out was an internal error (ArgumentException),
            // and a file given for it failed with the file system's words alone ("The file '...' already exists.").
            Files.RefuseEmpty(outDir, "--out");
            try { Directory.CreateDirectory(outDir); }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                throw new CommandFailedException($"cannot create the --out folder '{outDir}': {Cli.OneLine(ex.Message)}");
            }
            Par.Threads = parse.GetValue(threads);
            var options = new TrainOptions { Network = QanaOptions.Full with { PooledHead = parse.GetValue(pooledHead) }, Seed = parse.GetValue(seed), Epochs = e, Patience = e, QatEpochs = q };
            string schedule = FormattableString.Invariant(
                $"{e} float epoch{(e == 1 ? "" : "s")} per trained row (cosine schedule of that length, no early stop) and {q} QAT epoch{(q == 1 ? "" : "s")} per row");
            if (e < 35) schedule += "; a short schedule (the shipped model trains for 35 or more float epochs), so rows compare with each other, not with the paper";
            var sw = System.Diagnostics.Stopwatch.StartNew();
            IReadOnlyList<AblationRow> rows;
            var progress = new ProgressLine(context.Err, ProgressLine.CanRedraw(context.Err), ProgressLine.Columns(context.Err));
            try
            {
                rows = new Ablation(options, images, csv, outDir, progress.Update).Run();
            }
            finally { progress.Done(); } // a data set that cannot be used (DatasetException) is reported by Cli.Report
            var when = DateTime.UtcNow;
            schedule += Took(sw.Elapsed, Par.Threads);
            Report(context.Out, rows, tablePath, Ablation.Markdown(rows, options, schedule, parse.GetValue(commit), when),
                jsonPath, Ablation.Json(rows, options, schedule, parse.GetValue(commit), when));
            return Cli.Ok;
        });
        return command;
    }

    /// <summary>The schedule's last clause: how long the table took and with how many worker threads (--threads). The
    /// hours are counted whole: the hh of a TimeSpan wraps at a day, which a slow board's full-schedule table passes.</summary>
    public static string Took(TimeSpan elapsed, int threads) =>
        string.Create(CultureInfo.InvariantCulture, $"; the whole table took {Durations.Clock(elapsed)} on {threads} worker thread{(threads == 1 ? "" : "s")}");

    /// <summary>
    /// The end of a run: the rows on standard output first, then the table and the JSON written whole. The rows came
    /// after two plain writes, so a write that failed (a full disk, a folder removed during the run) lost the summary
    /// of hours of training, and a write cut short left half a table.
    /// </summary>
    /// <exception cref="CommandFailedException">The table or the JSON cannot be written.</exception>
    internal static void Report(TextWriter output, IReadOnlyList<AblationRow> rows, string tablePath, string table, string jsonPath, string json)
    {
        foreach (var r in rows)
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{r.Configuration,-26} top-1 {r.Test.Top1:P1}  recall {r.Test.BalancedAccuracy:P1}  precision {r.Test.MacroPrecision:P1}  F1 {r.Test.MacroF1:P1}  AUC {r.Test.AucMacro:F3}"));
        output.Flush();
        Write(tablePath, table);
        Write(jsonPath, json);
    }

    /// <summary>Writes through <see cref="Files.WriteAtomically"/>, first making the file's folder: --table and --json
    /// may name a folder that does not exist yet, as they always could.</summary>
    private static void Write(string path, string text)
    {
        string? dir = Path.GetDirectoryName(Path.GetFullPath(path));
        try { if (dir is not null) Directory.CreateDirectory(dir); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CommandFailedException($"cannot write '{path}': {Cli.OneLine(e.Message)}");
        }
        Files.WriteAtomically(path, System.Text.Encoding.UTF8.GetBytes(text));
    }
}
