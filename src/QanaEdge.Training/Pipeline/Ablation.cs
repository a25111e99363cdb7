using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using QanaEdge.Training.Evaluation;
using QanaEdge.Training.Network;

namespace QanaEdge.Training.Pipeline;

/// <summary>One row of the ablation table: test-split figures of the converted integer package.</summary>
public sealed record AblationRow(string Configuration, string Switches, ClassificationMetrics Test, double TestTriggerRate,
    double TilingTau, double ReferralSensitivity, double ReferralSpecificity, string Package, double Seconds, string Note);

/// <summary>
/// The paper's Table IV on our split, cumulative as the paper builds it: baseline (separable blocks with
/// residuals), + Ghost, + SA-ECA, + SE, + quantized head, + embedding SMOTE, + incremental learning. Every
/// figure is measured on the test split through the device's path with the converted integer package.
/// Rows that share a float phase share its training: + SE trains the full float network once, and
/// + quantized head, + SMOTE and + incremental learning start from that checkpoint (the float phase does
/// not depend on those switches). + SMOTE and + incremental learning come from one run: the test split
/// is evaluated with the package before and after the readout update (the run is deterministic, so the
/// first equals a separate + SMOTE run).
/// </summary>
public sealed class Ablation(TrainOptions baseOptions, string imagesDir, string labelsCsv, string outDir, Action<string>? progress = null)
{
    private void Say(string s) => progress?.Invoke(s);

    public IReadOnlyList<AblationRow> Run()
    {
        Directory.CreateDirectory(outDir);
        int size = baseOptions.Network.InputSize;
        var data = PreparedData.Load(imagesDir, labelsCsv, size, baseOptions.ZoomSourceSize, baseOptions.GrayWorld, incremental: true);
        var rows = new List<AblationRow>();
        var full = baseOptions.Network with { Ghost = true, Eca = true, Se = true, QuantHead = true };
        var baseline = full with { Ghost = false, Eca = false, Se = false, QuantHead = false };

        rows.Add(Train("baseline (separable CNN)", "1-baseline", baseline, false, false, null));
        rows.Add(Train("+ Ghost blocks", "2-ghost", baseline with { Ghost = true }, false, false, null));
        rows.Add(Train("+ SA-ECA", "3-eca", baseline with { Ghost = true, Eca = true }, false, false, null));
        var seRow = Train("+ SE", "4-se", full with { QuantHead = false }, false, false, null);
        rows.Add(seRow);
        string floatCkpt = Path.ChangeExtension(seRow.Package, ".float.ckpt");
        rows.Add(Train("+ quantized head", "5-quant-head", full, false, false, floatCkpt));
        var (smoteRow, incrementalRow) = TrainSmoteAndIncremental(full, floatCkpt);
        rows.Add(smoteRow);
        rows.Add(incrementalRow);
        return rows;

        AblationRow Train(string name, string file, QanaOptions net, bool smote, bool incremental, string? resume)
        {
            var (result, sw, o, paths) = RunOne(file, net, smote, incremental, resume, evaluateBefore: false);
            return Row(name, o, result.Test, result, paths, sw, resume is null ? "" : "float phase of + SE");
        }

        (AblationRow, AblationRow) TrainSmoteAndIncremental(QanaOptions net, string resume)
        {
            var (result, sw, o, paths) = RunOne("6-smote-incremental", net, true, true, resume, evaluateBefore: true);
            var inc = result.Incremental!;
            string note = $"readout update {(inc.Accepted ? "kept" : "refused")}: golden-set top-1 {inc.GoldenTop1Before:P1} → {inc.GoldenTop1After:P1}, macro-F1 {inc.GoldenMacroF1Before:F3} → {inc.GoldenMacroF1After:F3}";
            var before = Row("+ embedding SMOTE", o with { Incremental = false }, result.TestBeforeIncremental!, result, paths, sw,
                "float phase of + SE; package before the readout update");
            before = before with
            {
                TestTriggerRate = result.TestTilingTriggerRateBeforeIncremental,
                ReferralSensitivity = result.TestReferralBeforeIncremental!.Sensitivity, ReferralSpecificity = result.TestReferralBeforeIncremental.Specificity,
            };
            return (before, Row("+ incremental learning", o, result.Test, result, paths, sw, note));
        }

        (PipelineResult, TimeSpan, TrainOptions, PipelinePaths) RunOne(string file, QanaOptions net, bool smote, bool incremental, string? resume, bool evaluateBefore)
        {
            var o = baseOptions with { Network = net, Smote = smote, Incremental = incremental, Patience = Math.Max(baseOptions.Patience, baseOptions.Epochs) };
            var paths = new PipelinePaths { ImagesDir = imagesDir, LabelsCsv = labelsCsv, OutPackage = Path.Combine(outDir, file + ".qana"), ResumeFloat = resume };
            Say($"ablation: {file} ({Switches(o)})");
            var sw = Stopwatch.StartNew();
            var result = new TrainingPipeline(o, paths, progress) { Data = data, EvaluateBeforeIncremental = evaluateBefore }.Run();
            return (result, sw.Elapsed, o, paths);
        }

        static AblationRow Row(string name, TrainOptions o, ClassificationMetrics test, PipelineResult r, PipelinePaths paths, TimeSpan sw, string note) =>
            new(name, Switches(o), test, r.TestTilingTriggerRate, r.Package.Manifest.Calibration.TilingTau,
                r.TestReferral?.Sensitivity ?? double.NaN, r.TestReferral?.Specificity ?? double.NaN, paths.OutPackage, sw.TotalSeconds, note);
    }

    /// <summary>A run's ablation switches on one line ("ghost=on … head=pooled"): a row of docs/ablation.md, and the
    /// <c>ablation</c> entry of the package's provenance.</summary>
    public static string Switches(TrainOptions o) =>
        $"ghost={On(o.Network.Ghost)} eca={On(o.Network.Eca)} se={On(o.Network.Se)} quant-head={On(o.Network.QuantHead)} smote={On(o.Smote)} incremental={On(o.Incremental)} head={(o.Network.PooledHead ? "pooled" : "flatten")}";

    private static string On(bool b) => b ? "on" : "off";

    /// <summary>The table as markdown, with the schedule that produced it.</summary>
    public static string Markdown(IReadOnlyList<AblationRow> rows, TrainOptions o, string schedule, string? commit, DateTime whenUtc)
    {
        var ci = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.Append("# Ablation (the paper's Table IV on our split)\n\n");
        sb.Append(ci, $"Written by `qana ablate` ({whenUtc:yyyy-MM-dd HH:mm} UTC{(commit is null ? "" : $", commit {commit}")}). ");
        sb.Append(ci, $"Schedule: {schedule}. Seed {o.Seed}, input {o.Network.InputSize}×{o.Network.InputSize}, profile {o.Profile.ToString().ToLowerInvariant()}, batch {o.BatchSize}. ");
        sb.Append(ci, $"Every figure is from the internal test split ({(rows.Count > 0 ? rows[0].Test.N : 0)} images; lesion-grouped, stratified 70/10/20, seed 20180814), evaluated once per row ");
        sb.Append("through the device's path with the converted integer package (calibrated spiking readout, tiling fallback under the row's τ). ");
        sb.Append("Recall, precision and F1 are macro averages over the seven classes (macro recall is the balanced accuracy); AUC is the macro one-vs-rest AUC. ");
        sb.Append("Rows are cumulative, as in the paper; + SE, + quantized head, + SMOTE and + incremental learning share one float phase (those switches act after it).\n\n");
        sb.Append("| configuration | accuracy (top-1) | recall (macro) | precision (macro) | F1 (macro) | AUC (macro) | referral sens. / spec. | tiling τ / test trigger rate | wall time |\n");
        sb.Append("|---|---|---|---|---|---|---|---|---|\n");
        foreach (var r in rows)
        {
            var m = r.Test;
            sb.Append(ci, $"| {r.Configuration} | {P(m.Top1)} | {P(m.BalancedAccuracy)} | {P(m.MacroPrecision)} | {P(m.MacroF1)} | {(double.IsFinite(m.AucMacro) ? m.AucMacro.ToString("F3", ci) : "n/a")} | ");
            sb.Append(ci, $"{(double.IsFinite(r.ReferralSensitivity) ? $"{P(r.ReferralSensitivity)} / {P(r.ReferralSpecificity)}" : "—")} | ");
            sb.Append(ci, $"{r.TilingTau:F3} / {(double.IsFinite(r.TestTriggerRate) ? P(r.TestTriggerRate) : "—")} | {WallTime(TimeSpan.FromSeconds(r.Seconds))} |\n");
        }
        sb.Append("\nNotes per row\n\n");
        foreach (var r in rows)
            sb.Append(ci, $"- {r.Configuration}: `{r.Switches}`{(r.Note.Length > 0 ? $"; {r.Note}" : "")}.\n");
        sb.Append('\n');
        if (rows.Any(r => !double.IsFinite(r.ReferralSensitivity) || !double.IsFinite(r.TestTriggerRate)))
            sb.Append("— : not measured for that row (see its note). ");
        sb.Append("Rows that share a run show that run's wall time.\n");
        return sb.ToString();

        static string P(double v) => (100 * v).ToString("F1", CultureInfo.InvariantCulture) + "%";
    }

    /// <summary>
    /// A row's wall time: mm:ss under an hour, h:mm:ss from an hour on. The mm:ss format alone wrapped at the hour, and
    /// a row of the default 60-epoch schedule takes more than one (75 minutes read "15:00").
    /// </summary>
    public static string WallTime(TimeSpan t) => t.TotalHours >= 1
        ? string.Create(CultureInfo.InvariantCulture, $"{(long)t.TotalHours}:{t.Minutes:D2}:{t.Seconds:D2}")
        : string.Create(CultureInfo.InvariantCulture, $"{t.Minutes:D2}:{t.Seconds:D2}");

    public static string Json(IReadOnlyList<AblationRow> rows, TrainOptions o, string schedule, string? commit, DateTime whenUtc)
    {
        static object N(double v) => double.IsFinite(v) ? v : "n/a";
        var doc = new Dictionary<string, object>
        {
            ["schedule"] = schedule, ["seed"] = (double)o.Seed, ["input_size"] = o.Network.InputSize, ["profile"] = o.Profile.ToString().ToLowerInvariant(),
            ["float_epochs"] = o.Epochs, ["qat_epochs"] = o.QatEpochs, ["commit"] = commit ?? "", ["written_utc"] = whenUtc.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture),
            ["rows"] = rows.Select(r => new Dictionary<string, object>
            {
                ["configuration"] = r.Configuration, ["switches"] = r.Switches, ["n"] = r.Test.N,
                ["top1"] = r.Test.Top1, ["recall_macro"] = r.Test.BalancedAccuracy, ["precision_macro"] = r.Test.MacroPrecision,
                ["f1_macro"] = r.Test.MacroF1, ["auc_macro"] = N(r.Test.AucMacro),
                ["referral_sensitivity"] = N(r.ReferralSensitivity), ["referral_specificity"] = N(r.ReferralSpecificity),
                ["tiling_tau"] = r.TilingTau, ["test_tiling_trigger_rate"] = N(r.TestTriggerRate),
                ["seconds"] = r.Seconds, ["package"] = Path.GetFileName(r.Package), ["note"] = r.Note,
            }).ToArray(),
        };
        return JsonSerializer.Serialize(doc, TrainingJson.Default.DictionaryStringObject);
    }
}
