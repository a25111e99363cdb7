namespace QanaEdge.Cli.Tests;

/// <summary><c>qana ablate</c> and the new <c>qana train</c> switches refuse bad calls with one line (the runs themselves are tested in the Training tests).</summary>
public class AblateCommandTests
{
    [Fact]
    public void AblateNeedsItsDataAndAPositiveSchedule()
    {
        Qana.Run("ablate", "--labels", "x.csv").AssertOneLineError(2, "--data");
        var dir = Directory.CreateTempSubdirectory("qana-ablate-");
        try
        {
            Qana.Run("ablate", "--data", dir.FullName, "--labels", "x.csv", "--epochs", "0").AssertOneLineError(2, "--epochs");
            Qana.Run("ablate", "--data", dir.FullName, "--labels", "x.csv", "--threads", "0").AssertOneLineError(2, "--threads");
            Qana.Run("ablate", "--data", dir.FullName, "--labels", Path.Combine(dir.FullName, "missing.csv")).AssertOneLineError(1, "not found");
        }
        finally { dir.Delete(recursive: true); }
    }

    /// <summary>Batch messages (about a thousand per ablation row) redraw one line; other messages get a line each,
    /// and <see cref="Commands.ProgressLine.Done"/> ends a live line so the next output starts clean.</summary>
    /// <summary>Where standard error cannot redraw a line (a file, a pipe), batch messages are dropped, the rest kept.</summary>
    [Fact]
    public void ProgressWithoutALiveLineKeepsOnlyPhasesAndEpochs()
    {
        var err = new StringWriter();
        var progress = new Commands.ProgressLine(err, live: false);
        progress.Update("float training");
        for (int b = 1; b <= 100; b++) progress.Update($"float epoch 1/6 batch {b}/100 loss 1.9");
        progress.Update("float epoch 1/6: train loss 1.9, validation macro-F1 0.200");
        progress.Done();
        Assert.Equal(["float training", "float epoch 1/6: train loss 1.9, validation macro-F1 0.200", ""], err.ToString().Split(Environment.NewLine));
    }

    [Fact]
    public void ProgressRedrawsBatchMessagesOnOneLine()
    {
        var err = new StringWriter { NewLine = "\n" };
        var progress = new Commands.ProgressLine(err);
        progress.Update("ablation: 1-baseline.qana (ghost=off)");
        for (int b = 1; b <= 100; b++) progress.Update($"float epoch 1/6 batch {b}/100 loss 1.9");
        progress.Update("float epoch 1/6: train loss 1.9, validation macro-F1 0.200");
        for (int b = 1; b <= 100; b++) progress.Update($"float epoch 2/6 batch {b}/100 loss 1.8");
        progress.Done();
        string[] lines = err.ToString().Split('\n');
        Assert.Equal(5, lines.Length); // phase, live line, epoch summary, live line, and the empty rest after the last newline
        Assert.Equal("", lines[^1]);
        Assert.EndsWith("batch 100/100 loss 1.8", lines[3].TrimEnd());
    }

    /// <summary>
    /// A redraw covers what the previous live line showed and no more: each one was padded to 110 characters, which an
    /// 80-column terminal wraps onto a second row, and the next carriage return went back only to that row, so every
    /// batch message left a row behind.
    /// </summary>
    [Fact]
    public void A_redrawn_batch_line_is_padded_only_over_the_previous_one()
    {
        var err = new StringWriter { NewLine = "\n" };
        var progress = new Commands.ProgressLine(err);
        progress.Update("float epoch 1/6 batch 10/100 loss 1.9000 val-F1 - ETA 00:01:00");
        progress.Update("float epoch 1/6 batch 9/100 loss 1.9");
        progress.Update("float epoch 1/6 batch 11/100 loss 1.9000 val-F1 - ETA 00:00:59");
        progress.Done();
        string[] draws = err.ToString().TrimEnd('\n').Split('\r')[1..];
        Assert.Equal(["float epoch 1/6 batch 10/100 loss 1.9000 val-F1 - ETA 00:01:00",
            "float epoch 1/6 batch 9/100 loss 1.9".PadRight(62),
            "float epoch 1/6 batch 11/100 loss 1.9000 val-F1 - ETA 00:00:59"], draws);
    }

    /// <summary>On a terminal narrower than a batch message the live line is cut to one column less than its width, so it
    /// never wraps; the lines that stay are written whole.</summary>
    [Fact]
    public void A_batch_line_is_cut_to_the_terminal_width()
    {
        var err = new StringWriter { NewLine = "\n" };
        var progress = new Commands.ProgressLine(err, columns: 40);
        progress.Update("float epoch 1/6 batch 10/100 loss 1.9000 val-F1 - ETA 00:01:00");
        progress.Update("float epoch 1/6: loss 1.9000, validation top-1 20.0%, macro-F1 0.200");
        Assert.Equal("\rfloat epoch 1/6 batch 10/100 loss 1.900\nfloat epoch 1/6: loss 1.9000, validation top-1 20.0%, macro-F1 0.200\n", err.ToString());
    }

    [Fact]
    public void TheTableNamesTheThreadsUsed()
    {
        Assert.Equal("; the whole table took 01:02:03 on 1 worker thread", Commands.AblateCommand.Took(new TimeSpan(1, 2, 3), 1));
        Assert.EndsWith("on 3 worker threads", Commands.AblateCommand.Took(TimeSpan.Zero, 3));
        // Past a day the hours go on counting: the hh format wrapped to 01:30:00.
        Assert.Equal("; the whole table took 25:30:00 on 2 worker threads", Commands.AblateCommand.Took(TimeSpan.FromHours(25.5), 2));
    }

    /// <summary>
    /// A row's wall time in the table reads its hours: with the mm:ss format a row of 75 minutes (the default 60-epoch
    /// schedule takes more than an hour a row) read "15:00"; under an hour the column keeps mm:ss.
    /// </summary>
    [Fact]
    public void The_tables_wall_time_of_a_row_over_an_hour_shows_its_hours()
    {
        int[] truth = [0, 1, 2, 3, 4, 5, 6];
        float[][] p = truth.Select(t => Enumerable.Range(0, 7).Select(c => c == t ? 0.4f : 0.1f).ToArray()).ToArray();
        var test = QanaEdge.Training.Evaluation.ClassificationMetrics.Compute(truth, p);
        QanaEdge.Training.Pipeline.AblationRow Row(string name, double seconds) =>
            new(name, "ghost=off", test, 0.05, 0.3, 0.9, 0.7, "x.qana", seconds, "");
        string table = QanaEdge.Training.Pipeline.Ablation.Markdown([Row("long", 4500), Row("short", 434)],
            new QanaEdge.Training.Pipeline.TrainOptions(), "60 float epochs", null, new DateTime(2026, 12, 7));
        Assert.Contains("| 0.300 / 5.0% | 1:15:00 |\n", table);
        Assert.Contains("| 0.300 / 5.0% | 07:14 |\n", table);
    }

    /// <summary>
    /// The end of an ablation prints the rows before it writes the table and the JSON, and writes them whole: the rows
    /// came after two plain writes, so a write that failed lost the summary of the whole run.
    /// </summary>
    [Fact]
    public void The_rows_are_printed_before_the_table_and_json_are_written_whole_and_a_failed_write_keeps_them()
    {
        int[] truth = [0, 1, 2, 3, 4, 5, 6];
        float[][] p = truth.Select(t => Enumerable.Range(0, 7).Select(c => c == t ? 0.4f : 0.1f).ToArray()).ToArray();
        var test = QanaEdge.Training.Evaluation.ClassificationMetrics.Compute(truth, p);
        QanaEdge.Training.Pipeline.AblationRow[] rows = [new("baseline (separable CNN)", "ghost=off", test, 0.05, 0.3, 0.9, 0.7, "x.qana", 60, "")];
        var dir = Directory.CreateTempSubdirectory("qana-ablate-report-");
        try
        {
            // A file where the table's folder should be: the write fails after the run.
            string blocker = Path.Combine(dir.FullName, "docs");
            File.WriteAllText(blocker, "not a folder");
            string table = Path.Combine(blocker, "ablation.md"), json = Path.Combine(dir.FullName, "ablation.json");
            var output = new StringWriter();
            var e = Assert.Throws<CommandFailedException>(() => Commands.AblateCommand.Report(output, rows, table, "# table\n", json, "{}"));
            Assert.StartsWith($"cannot write '{table}'", e.Message);
            Assert.StartsWith("baseline (separable CNN)   top-1 100.0 %", output.ToString());

            // Written whole into a folder the run creates, with no temporary file left beside them.
            table = Path.Combine(dir.FullName, "new", "ablation.md");
            output = new StringWriter();
            Commands.AblateCommand.Report(output, rows, table, "# table\n", json, "{}");
            Assert.Equal("# table\n", File.ReadAllText(table));
            Assert.Equal("{}", File.ReadAllText(json));
            Assert.Contains("baseline (separable CNN)", output.ToString());
            Assert.Empty(Directory.GetFiles(dir.FullName, "*.tmp-*", SearchOption.AllDirectories));
        }
        finally { dir.Delete(recursive: true); }
    }

    /// <summary>bench and evaluate take '-' for standard output; ablate, whose rows go there, refuses it rather than
    /// writing a file named '-' after the run.</summary>
    [Fact]
    public void Ablate_refuses_a_dash_for_its_table_or_json_before_the_run()
    {
        var dir = Directory.CreateTempSubdirectory("qana-ablate-dash-");
        try
        {
            string labels = Path.Combine(dir.FullName, "labels.csv");
            File.WriteAllText(labels, "image_id,lesion_id,dx\n");
            Qana.Run("ablate", "--data", dir.FullName, "--labels", labels, "--out", Path.Combine(dir.FullName, "rows"), "--json", "-")
                .AssertOneLineError(2, "--json '-'");
            Qana.Run("ablate", "--data", dir.FullName, "--labels", labels, "--out", Path.Combine(dir.FullName, "rows"), "--table", "-")
                .AssertOneLineError(2, "--table '-'");
        }
        finally { dir.Delete(recursive: true); }
    }

    [Fact]
    public void TrainAcceptsTheSmoteAndIncrementalSwitches()
    {
        // Parsed as switches (not unknown options): the call then fails only for the missing labels file.
        var dir = Directory.CreateTempSubdirectory("qana-train-");
        try
        {
            Qana.Run("train", "--data", dir.FullName, "--labels", Path.Combine(dir.FullName, "missing.csv"), "--out", Path.Combine(dir.FullName, "m.qana"),
                "--smote", "--incremental").AssertOneLineError(1, "labels file");
        }
        finally { dir.Delete(recursive: true); }
    }

    /// <summary>The package, the table and the JSON are written after the training: a folder named for one of them is
    /// refused before any data is read (here the labels file does not even exist).</summary>
    [Fact]
    public void OutputsThatAreFoldersAreRefusedBeforeTheRun()
    {
        var dir = Directory.CreateTempSubdirectory("qana-outputs-");
        try
        {
            string labels = Path.Combine(dir.FullName, "missing.csv");
            Qana.Run("train", "--data", dir.FullName, "--labels", labels, "--out", dir.FullName).AssertOneLineError(1, "is a folder");
            Qana.Run("train", "--data", dir.FullName, "--labels", labels, "--out", Path.Combine(dir.FullName, "new") + "/").AssertOneLineError(1, "--out");
            File.WriteAllText(labels, "image_id,lesion_id,dx\n");
            Qana.Run("ablate", "--data", dir.FullName, "--labels", labels, "--table", dir.FullName).AssertOneLineError(1, "--table");
            Qana.Run("ablate", "--data", dir.FullName, "--labels", labels, "--table", Path.Combine(dir.FullName, "t.md"), "--json", dir.FullName)
                .AssertOneLineError(1, "--json");
        }
        finally { dir.Delete(recursive: true); }
    }

    /// <summary>
    /// ablate's outputs are checked before any data is read (the labels here have no rows): an empty --out was an
    /// internal error and a file given for it the file system's words alone; one file named for both --table and
    /// --json (the JSON replaced the table after the whole run) or the labels named for either is bad usage, as is
    /// train's --out naming the labels (the package replaced them after the run).
    /// </summary>
    [Fact]
    public void Ablate_and_train_refuse_an_unusable_out_and_outputs_over_each_other_or_the_labels_before_the_run()
    {
        var dir = Directory.CreateTempSubdirectory("qana-ablate-out-");
        try
        {
            string labels = Path.Combine(dir.FullName, "labels.csv"), table = Path.Combine(dir.FullName, "t.md"), json = Path.Combine(dir.FullName, "t.json");
            File.WriteAllText(labels, "image_id,lesion_id,dx\n");
            string[] Args(string output, string t, string j) => ["ablate", "--data", dir.FullName, "--labels", labels, "--out", output, "--table", t, "--json", j];
            var r = Qana.Run(Args("", table, json));
            r.AssertOneLineError(2, "--out is empty");
            Assert.DoesNotContain("internal error", r.Err);
            Qana.Run(Args(labels, table, json)).AssertOneLineError(1, $"cannot create the --out folder '{labels}'");
            string rows = Path.Combine(dir.FullName, "rows");
            Qana.Run(Args(rows, table, table)).AssertOneLineError(2, $"--json '{table}' is the --table file");
            Qana.Run(Args(rows, labels, json)).AssertOneLineError(2, $"--table '{labels}' is the --labels file");
            Qana.Run(Args(rows, table, labels)).AssertOneLineError(2, $"--json '{labels}' is the --labels file");
            Qana.Run("train", "--data", dir.FullName, "--labels", labels, "--out", labels).AssertOneLineError(2, $"--out '{labels}' is the --labels file");
            Assert.Equal("image_id,lesion_id,dx\n", File.ReadAllText(labels));
            Assert.False(File.Exists(table) || File.Exists(json));
        }
        finally { dir.Delete(recursive: true); }
    }

    [Theory]
    [InlineData("--zoom-probability", "1.5")]
    [InlineData("--dropout", "0.6")]
    [InlineData("--sampler-alpha", "-0.1")]
    [InlineData("--label-smoothing", "0.5")]
    [InlineData("--incremental-learning-rate", "0")]
    [InlineData("--incremental-epochs", "0")]
    [InlineData("--patience", "0")]
    [InlineData("--patience", "-3")]
    [InlineData("--dropout", "NaN")]
    [InlineData("--sampler-alpha", "NaN")]
    [InlineData("--zoom-probability", "NaN")]
    [InlineData("--learning-rate", "0")]
    [InlineData("--learning-rate", "-0.004")]
    [InlineData("--learning-rate", "NaN")]
    [InlineData("--learning-rate", "1e39")]   // beyond float: infinity
    [InlineData("--qat-learning-rate", "0")]
    [InlineData("--qat-learning-rate", "NaN")]
    [InlineData("--weight-decay", "-0.1")]
    [InlineData("--weight-decay", "NaN")]
    [InlineData("--threads", "0")]
    [InlineData("--threads", "-2")]
    [InlineData("--throughput-steps", "-1")]
    public void TrainRefusesARecipeValueOutOfRange(string option, string value) =>
        Qana.Run("train", "--data", "d", "--labels", "l.csv", "--out", "m.qana", option, value).AssertOneLineError(2, option + " must be");
}

/// <summary><c>qana train --throughput-steps</c>: one JSON line with what was measured and at which vector width.</summary>
public class TrainThroughputTests
{
    [Fact]
    public void Throughput_mode_reports_its_measurement_and_the_kernels_vector_width()
    {
        CliResult r = Qana.Run("train", "--throughput-steps", "2", "--batch-size", "4");
        Assert.True(r.Code == 0, r.Err);
        using var json = System.Text.Json.JsonDocument.Parse(r.Out.Trim().Split('\n')[^1]);
        var o = json.RootElement;
        Assert.Equal(4, o.GetProperty("batch").GetInt32());
        Assert.Equal(2, o.GetProperty("steps").GetInt32());
        Assert.True(o.GetProperty("threads").GetInt32() >= 1);
        double seconds = o.GetProperty("seconds").GetDouble();
        Assert.True(seconds > 0);
        Assert.Equal(8 / seconds, o.GetProperty("images_per_s").GetDouble(), 0.1 + 0.01 * 8 / seconds);
        // The command runs in this process, so its kernels' Vector<float> is this one.
        Assert.Equal(System.Numerics.Vector<float>.Count, o.GetProperty("vector_lanes").GetInt32());
    }

    /// <summary>
    /// The network switches apply to the measurement: it always measured the full network with the flattened head, so
    /// --pooled-head or --baseline changed nothing, without a word. The line names the parameters of what was measured.
    /// </summary>
    [Fact]
    public void Throughput_mode_measures_the_network_the_switches_describe()
    {
        long Parameters(params string[] switches)
        {
            CliResult r = Qana.Run(["train", "--throughput-steps", "1", "--batch-size", "2", "--input-size", "32", .. switches]);
            Assert.True(r.Code == 0, r.Err);
            using var json = System.Text.Json.JsonDocument.Parse(r.Out.Trim().Split('\n')[^1]);
            return json.RootElement.GetProperty("parameters").GetInt64();
        }
        static long Expected(QanaEdge.Training.Network.QanaOptions o) =>
            new QanaEdge.Training.Network.QanaNet(o with { InputSize = 32 }, 1).Parameters.Sum(p => (long)p.Value.Length);
        var full = QanaEdge.Training.Network.QanaOptions.Full;
        Assert.Equal(Expected(full), Parameters());
        Assert.Equal(Expected(full with { PooledHead = true }), Parameters("--pooled-head"));
        Assert.Equal(Expected(QanaEdge.Training.Network.QanaOptions.Baseline), Parameters("--baseline"));
        Assert.NotEqual(Parameters(), Parameters("--pooled-head"));
    }
}

/// <summary><c>qana train --resume-float</c> checks the checkpoint against the network before it touches the data.</summary>
public class TrainResumeTests
{
    [Fact]
    public void A_checkpoint_of_another_head_is_refused_in_one_line_before_the_images_are_read()
    {
        var dir = Directory.CreateTempSubdirectory("qana-resume-");
        try
        {
            // The data cannot be loaded (its one image is missing): the checkpoint must be refused first.
            string images = Directory.CreateDirectory(Path.Combine(dir.FullName, "images")).FullName;
            string labels = Path.Combine(dir.FullName, "labels.csv");
            File.WriteAllText(labels, "image_id,lesion_id,dx\nISIC_missing,HAM_1,nv\n");
            string ckpt = Path.Combine(dir.FullName, "pooled.float.ckpt");
            var pooled = Training.Network.QanaOptions.Full with { InputSize = 16, PooledHead = true };
            Training.Pipeline.NetState.Capture(new Training.Network.QanaNet(pooled, 1)).Save(ckpt);
            string[] call = ["train", "--data", images, "--labels", labels, "--out", Path.Combine(dir.FullName, "m.qana"), "--input-size", "16", "--resume-float", ckpt];

            Qana.Run(call).AssertOneLineError(1, "pooled.float.ckpt");
            Assert.Contains("--pooled-head", Qana.Run(call).Err);

            File.WriteAllBytes(ckpt, File.ReadAllBytes(ckpt)[..100]);
            Qana.Run(call).AssertOneLineError(1, "pooled.float.ckpt");
            Assert.Contains("truncated", Qana.Run(call).Err);
        }
        finally { dir.Delete(recursive: true); }
    }
}

/// <summary><c>qana train</c> on a data set with a file that cannot be decoded: one line naming it, exit 1.</summary>
public class TrainDataTests
{
    [Fact]
    public void An_image_that_cannot_be_decoded_is_one_line_naming_it()
    {
        var dir = Directory.CreateTempSubdirectory("qana-train-data-");
        try
        {
            // Eight images of each class, one of them damaged.
            var (labels, ids) = SmallDataSet.Write(dir.FullName, 8);
            string damaged = ids[20];
            File.WriteAllText(Path.Combine(dir.FullName, damaged + ".jpg"), "not a picture");

            CliResult r = Qana.Run("train", "--data", dir.FullName, "--labels", labels, "--out", Path.Combine(dir.FullName, "m.qana"), "--input-size", "16");
            r.AssertOneLineError(1, "cannot be decoded");
            Assert.Contains($"{damaged}.jpg: not_an_image", r.Err);
            Assert.DoesNotContain("internal error", r.Err);
        }
        finally { dir.Delete(recursive: true); }
    }
}

/// <summary>
/// <c>qana train</c> opens the package's folder and its training log before the images are read: an --out whose folder
/// cannot be made or written failed only after the whole data set had been preprocessed.
/// </summary>
public class TrainOutputTests
{
    [Fact]
    public void An_out_folder_that_cannot_be_made_fails_before_the_images_are_read()
    {
        var dir = Directory.CreateTempSubdirectory("qana-train-out-");
        try
        {
            // The data cannot be loaded (its one image is missing): the output must be refused first.
            string labels = Path.Combine(dir.FullName, "labels.csv");
            File.WriteAllText(labels, "image_id,lesion_id,dx\nISIC_missing,HAM_1,nv\n");
            string blocker = Path.Combine(dir.FullName, "not-a-folder");
            File.WriteAllText(blocker, "");
            string package = Path.Combine(blocker, "m.qana");
            CliResult r = Qana.Run("train", "--data", dir.FullName, "--labels", labels, "--out", package, "--input-size", "16");
            r.AssertOneLineError(1, $"cannot write the training log '{Path.Combine(blocker, "m.log.jsonl")}' beside the package '{package}'");
            Assert.DoesNotContain("missing", r.Err);
        }
        finally { dir.Delete(recursive: true); }
    }

    /// <summary>The log is opened early but emptied only once the data has loaded: a run refused for its data leaves an
    /// earlier run's log as it was, and leaves no empty log where there was none.</summary>
    [Fact]
    public void A_run_refused_for_its_data_leaves_the_log_as_it_was()
    {
        var dir = Directory.CreateTempSubdirectory("qana-train-out-");
        try
        {
            string labels = Path.Combine(dir.FullName, "labels.csv");
            File.WriteAllText(labels, "image_id,lesion_id,dx\nISIC_missing,HAM_1,nv\n");
            string earlier = Path.Combine(dir.FullName, "earlier.qana"), fresh = Path.Combine(dir.FullName, "fresh.qana");
            File.WriteAllText(Path.ChangeExtension(earlier, ".log.jsonl"), "{\"phase\":\"float\"}\n");
            foreach (string package in new[] { earlier, fresh })
                Qana.Run("train", "--data", dir.FullName, "--labels", labels, "--out", package, "--input-size", "16").AssertOneLineError(1, "missing");
            Assert.Equal("{\"phase\":\"float\"}\n", File.ReadAllText(Path.ChangeExtension(earlier, ".log.jsonl")));
            Assert.False(File.Exists(Path.ChangeExtension(fresh, ".log.jsonl")));
        }
        finally { dir.Delete(recursive: true); }
    }
}

/// <summary>
/// <c>--learning-rate</c> and <c>--qat-learning-rate</c> set the rates the float and QAT phases train with, and the
/// package's provenance names them; a float rate far too large makes the run diverge in one line naming the switch.
/// </summary>
public class TrainLearningRateTests
{
    [Fact]
    public void Help_lists_the_learning_rates_with_the_recipes_defaults()
    {
        CliResult r = Qana.Run("train", "--help");
        Assert.Equal(0, r.Code);
        Assert.Matches(@"--learning-rate\b.*\[default: 0\.004\]", r.Out);
        Assert.Matches(@"--qat-learning-rate\b.*\[default: 0\.0002\]", r.Out);
        Assert.Matches(@"--weight-decay\b.*\[default: 0\.005\]", r.Out);
    }

    /// <summary>One epoch of each phase on 8 images of each class at 16×16 (about a second); returns the training
    /// log's learning rate of each phase (the rate its epoch ended at) and the package's recipe provenance.</summary>
    private static (Dictionary<string, double> Rates, string Recipe) Train(string dir, params string[] options)
    {
        string outDir = Path.Combine(dir, $"out-{options.Length}");
        string package = Path.Combine(outDir, "m.qana");
        CliResult r = Qana.Run(["train", "--data", dir, "--labels", Path.Combine(dir, "labels.csv"), "--out", package,
            "--input-size", "16", "--epochs", "1", "--qat-epochs", "1", "--batch-size", "8", "--threads", "2", .. options]);
        Assert.True(r.Code == 0, $"exit {r.Code}; stderr: {r.Err}");
        var rates = File.ReadAllLines(Path.ChangeExtension(package, ".log.jsonl")).Select(l => System.Text.Json.JsonDocument.Parse(l).RootElement)
            .ToDictionary(e => e.GetProperty("phase").GetString()!, e => e.GetProperty("learning_rate").GetDouble());
        return (rates, QanaEdge.Model.Packaging.PackageReader.Load(package).Manifest.Provenance["recipe"]);
    }

    [Fact]
    public void The_rates_set_are_the_ones_the_phases_train_with()
    {
        var dir = Directory.CreateTempSubdirectory("qana-train-lr-");
        try
        {
            SmallDataSet.Write(dir.FullName, 8);
            var (defaults, defaultRecipe) = Train(dir.FullName);
            var (doubled, recipe) = Train(dir.FullName, "--learning-rate", "0.008", "--qat-learning-rate", "0.0004");
            // Twice the peak gives twice the rate at every step of the same schedule, exactly (a power of two).
            Assert.Equal(2 * defaults["float"], doubled["float"]);
            Assert.Equal(2 * defaults["qat"], doubled["qat"]);
            Assert.StartsWith("AdamW wd=0.005 lr=0.008 warmup=2 cosine, QAT lr=0.0004, label smoothing", recipe, StringComparison.Ordinal);
            // A default run's provenance reads as before the QAT rate was an option.
            Assert.StartsWith("AdamW wd=0.005 lr=0.004 warmup=2 cosine, label smoothing", defaultRecipe, StringComparison.Ordinal);
        }
        finally { dir.Delete(recursive: true); }
    }

    /// <summary>At 1e30 the loss of a batch becomes NaN; at 1000 every loss stays finite but the weights grow enough for
    /// validation's forward pass to overflow, which ended in an internal error about a NaN score.</summary>
    [Theory]
    [InlineData("1e30", @"loss (NaN|[+-]Inf)")]
    [InlineData("1000", @"the validation outputs after it are not finite")]
    public void A_float_rate_far_too_large_stops_the_run_in_one_line_naming_the_switch(string rate, string what) =>
        AssertDiverges("--learning-rate", rate, "float", what, "a smaller --learning-rate");

    /// <summary>At 1e30 the QAT phase's weights grow beyond what the integer graph's multipliers can express, which
    /// ended in an internal error.</summary>
    [Fact]
    public void A_QAT_rate_far_too_large_stops_the_run_in_one_line_naming_the_switch() =>
        AssertDiverges("--qat-learning-rate", "1e30", "qat", @"the weights left the integer graph's range: multiplier .* is too large .*",
            "a smaller --qat-learning-rate");

    private static void AssertDiverges(string option, string rate, string phase, string what, string hint)
    {
        var dir = Directory.CreateTempSubdirectory("qana-train-lr-");
        try
        {
            var (labels, _) = SmallDataSet.Write(dir.FullName, 8);
            // Batches of 8 give the phase several steps in its one epoch: the first is taken from finite weights.
            CliResult r = Qana.Run("train", "--data", dir.FullName, "--labels", labels, "--out", Path.Combine(dir.FullName, "m.qana"),
                "--input-size", "16", "--epochs", "1", "--qat-epochs", "1", "--batch-size", "8", "--threads", "2", option, rate);
            Assert.True(r.Code == 1, $"exit {r.Code}; stderr: {r.Err}");
            // The steps before it were reported on lines of their own; the failure is the last line.
            Assert.Matches($@"^qana: training diverged in the {phase} phase at epoch 1, batch \d+ \({what}\): {hint}", r.ErrLines[^1]);
            Assert.DoesNotContain("internal error", r.Err);
            Assert.False(File.Exists(Path.Combine(dir.FullName, "m.qana")));
        }
        finally { dir.Delete(recursive: true); }
    }
}

/// <summary>A small HAM10000 data set for <c>qana train</c>: the first images of each class, copied with their labels.</summary>
internal static class SmallDataSet
{
    /// <summary>Copies <paramref name="perClass"/> images of each class into <paramref name="dir"/> and writes their
    /// labels.csv there; returns its path and the image ids in the order of its rows.</summary>
    public static (string Labels, string[] ImageIds) Write(string dir, int perClass)
    {
        string data = FindHam10000();
        string[] lines = File.ReadAllLines(Path.Combine(data, "labels.csv"));
        string[] header = lines[0].Split(',');
        int dx = Array.IndexOf(header, "dx"), id = Array.IndexOf(header, "image_id");
        var picked = QanaEdge.Model.Classes.Codes.SelectMany(code => lines.Skip(1).Where(l => l.Split(',')[dx] == code).Take(perClass)).ToList();
        foreach (string line in picked)
        {
            string name = line.Split(',')[id] + ".jpg";
            File.Copy(Path.Combine(data, "images", name), Path.Combine(dir, name));
        }
        string labels = Path.Combine(dir, "labels.csv");
        File.WriteAllLines(labels, picked.Prepend(lines[0]));
        return (labels, picked.Select(l => l.Split(',')[id]).ToArray());
    }

    private static string FindHam10000()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            string candidate = Path.Combine(d.FullName, "shared", "data", "ham10000");
            if (File.Exists(Path.Combine(candidate, "labels.csv"))) return candidate;
        }
        throw new DirectoryNotFoundException("HAM10000 not found at <repo>/../shared/data/ham10000");
    }
}
