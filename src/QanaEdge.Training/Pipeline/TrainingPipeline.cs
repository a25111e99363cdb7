using System.Diagnostics;
using System.Text;
using System.Text.Json;
using QanaEdge.Model;
using QanaEdge.Model.Packaging;
using QanaEdge.Runtime;
using QanaEdge.Training.Calibration;
using QanaEdge.Training.Conversion;
using QanaEdge.Training.Data;
using QanaEdge.Training.Engine;
using QanaEdge.Training.Evaluation;
using QanaEdge.Training.Incremental;
using QanaEdge.Training.Network;
using QanaEdge.Training.Quantization;

namespace QanaEdge.Training.Pipeline;

/// <summary>Where the pipeline reads and writes.</summary>
public sealed record PipelinePaths
{
    public required string ImagesDir { get; init; }
    public required string LabelsCsv { get; init; }
    public required string OutPackage { get; init; }
    /// <summary>Skip the float phase and start from this checkpoint (written by an earlier run as OUT.float.ckpt).</summary>
    public string? ResumeFloat { get; init; }
    public string LogPath => Path.ChangeExtension(OutPackage, ".log.jsonl");
    public string ReportPath => Path.ChangeExtension(OutPackage, ".report.json");
    public string ReportMarkdownPath => Path.ChangeExtension(OutPackage, ".report.md");
    public string FloatCheckpoint => Path.ChangeExtension(OutPackage, ".float.ckpt");
    /// <summary>Calibration figures (SVG): tiling τ, referral threshold, per-class readout thresholds.</summary>
    public string FiguresDir => Path.ChangeExtension(OutPackage, ".figures");
}

/// <summary>
/// The split and the preprocessed training and validation images, loaded once and shared by several runs (the
/// ablation), with the gray-world gains already applied to both; the package carries <see cref="ColorGains"/>
/// so the device applies the same ones.
/// </summary>
public sealed record PreparedData(LesionSplit Split, ImageSet Train, ImageSet Validation, float[] ColorGains)
{
    /// <param name="zoomSourceSize">Side of the larger copy of each training image that zoomed views are cut from (0: none).</param>
    /// <param name="grayWorld">Fit gray-world gains on the training images (otherwise gains of 1).</param>
    /// <param name="incremental">The run has the incremental stage, whose golden set is half of validation.</param>
    /// <exception cref="DatasetException">The labels or the split cannot be used (<see cref="CheckSplit"/>), or image files
    /// of any split cannot be decoded (the test split's are decoded here once, only to check them).</exception>
    public static PreparedData Load(string imagesDir, string labelsCsv, int size, int zoomSourceSize = 0, bool grayWorld = true,
        bool incremental = false)
    {
        var split = LesionSplit.Create(Ham10000Index.Load(imagesDir, labelsCsv));
        CheckSplit(split, incremental);
        // The test split is read only at the end of a run: a file there that cannot be decoded must fail now, not
        // after the whole training.
        ImageFiles.CheckDecodable(split.Test.Select(r => r.ImagePath).ToArray(), "test images");
        var train = ImageSet.Load(split.Train, size, zoomSourceSize);
        var val = ImageSet.Load(split.Validation, size);
        float[] gains = grayWorld ? FitGrayWorld(train) : [1f, 1f, 1f];
        ApplyGains(train, gains);
        ApplyGains(val, gains);
        return new PreparedData(split, train, val, gains);
    }

    /// <summary>
    /// Refuses a split that leaves validation or test without what a run needs of them, before any image is decoded:
    /// a small data set leaves them nearly empty (a class gives validation a lesion only from about six lesions on), and
    /// the run used to fail only where it first needed them, with an internal error after the training. Training needs
    /// two images; validation early stopping, lesion-grouped halves for the threshold cross-check (two lesions), and
    /// malignant and benign cases for the referral threshold and its specificity; test the same two kinds for the
    /// reported referral figures; the incremental stage a golden half, i.e. a class with two validation lesions.
    /// </summary>
    /// <exception cref="DatasetException">What is missing, with the counts of each part.</exception>
    public static void CheckSplit(LesionSplit split, bool incremental = false)
    {
        static (int Malignant, int Benign) Kinds(IReadOnlyList<Ham10000Row> rows) =>
            (rows.Count(r => ReferralMetrics.IsMalignant(r.ClassIndex)), rows.Count(r => !ReferralMetrics.IsMalignant(r.ClassIndex)));
        var (valMalignant, valBenign) = Kinds(split.Validation);
        var (testMalignant, testBenign) = Kinds(split.Test);
        int valLesions = split.Validation.Select(r => r.LesionId).Distinct(StringComparer.Ordinal).Count();
        var missing = new List<string>();
        if (split.Train.Count < 2) missing.Add("training needs at least two images");
        if (valLesions < 2) missing.Add("validation needs images of at least two lesions");
        if (valMalignant == 0 || valBenign == 0) missing.Add("validation needs malignant (akiec, bcc, mel) and benign images");
        if (testMalignant == 0 || testBenign == 0) missing.Add("test needs malignant and benign images");
        if (incremental && missing.Count == 0)
        {
            var (stream, golden) = IncrementalStage.SplitByLesion(split.Validation.Select(r => r.ClassIndex).ToArray(),
                split.Validation.Select(r => r.LesionId!).ToArray(), 0);
            if (stream.Length == 0 || golden.Length == 0) missing.Add("the incremental stage needs a class with two validation lesions for its golden set");
        }
        if (missing.Count > 0)
            throw new DatasetException(
                $"the lesion-grouped split is too small for a run: training {split.Train.Count} images, validation {split.Validation.Count} images " +
                $"of {valLesions} lesions ({valMalignant} malignant, {valBenign} benign), test {split.Test.Count} images ({testMalignant} malignant, " +
                $"{testBenign} benign); {string.Join("; ", missing)}");
    }

    /// <summary>Gray-world gains of the training images at the input size: the pixels the network sees.</summary>
    private static float[] FitGrayWorld(ImageSet train)
    {
        var fit = new GrayWorld();
        foreach (var image in train.Pixels) fit.Add(image);
        return fit.Gains();
    }

    /// <summary>Applies the gains with the device's own function (Preprocessor.ApplyColorGains), to every view of a set.</summary>
    private static void ApplyGains(ImageSet set, float[] gains)
    {
        foreach (var image in set.Pixels) Imaging.Preprocessor.ApplyColorGains(image, gains);
        if (set.ZoomPixels is { } zoom)
            foreach (var image in zoom) Imaging.Preprocessor.ApplyColorGains(image, gains);
    }
}

/// <summary>What a run produced.</summary>
public sealed record PipelineResult(ModelPackage Package, ClassificationMetrics Test, double ValidationAgreement,
    double FakeQuantValTop1, double IntegerValTop1, double FloatValMacroF1)
{
    /// <summary>Share of test images the tiling fallback ran on, with the package's τ.</summary>
    public double TestTilingTriggerRate { get; init; }
    public ReferralMetrics? TestReferral { get; init; }
    public TilingFit? Tiling { get; init; }
    public SmoteStageReport? Smote { get; init; }
    public IncrementalReport? Incremental { get; init; }
    /// <summary>Test figures of the package before the readout update (equal to <see cref="Test"/> when there was none).</summary>
    public ClassificationMetrics? TestBeforeIncremental { get; init; }
    public double TestTilingTriggerRateBeforeIncremental { get; init; }
    public ReferralMetrics? TestReferralBeforeIncremental { get; init; }
}

/// <summary>
/// The whole recipe behind <c>qana train</c>: preprocess once → lesion-grouped split → float training
/// (BN) → BN folding → calibration of activation ranges → quantization-aware fine-tuning → conversion →
/// integer evaluation and readout calibration on validation → one evaluation on the test split →
/// package, training log and report. Optional stages after the float phase: embedding-space SMOTE
/// (<see cref="TrainOptions.Smote"/>) before BN folding, and the readout learner
/// (<see cref="TrainOptions.Incremental"/>) after calibration.
/// </summary>
public sealed class TrainingPipeline(TrainOptions options, PipelinePaths paths, Action<string>? progress = null)
{
    private void Say(string line) => progress?.Invoke(line);

    /// <summary>Images already loaded for this split and input size (otherwise Run loads them).</summary>
    public PreparedData? Data { get; init; }

    /// <summary>
    /// Also evaluate the test split with the package as it was before the readout update (ablation: the
    /// +SMOTE row and the +incremental row then come from one run).
    /// </summary>
    public bool EvaluateBeforeIncremental { get; init; }

    public PipelineResult Run()
    {
        var total = Stopwatch.StartNew();
        var o = options;
        int size = o.Network.InputSize;
        // A checkpoint to resume from is read and checked against the network first: a wrong one fails now, not after preprocessing.
        NetState? resumed = paths.ResumeFloat is { } resumeFrom ? NetState.LoadFor(resumeFrom, new QanaNet(o.Network, o.Seed)) : null;
        // The package's folder and the training log beside it are opened before the images are decoded: an output folder
        // that cannot be made or written (read-only, a file in the way) failed only after the whole data set was
        // preprocessed, in the file system's words alone. An earlier run's log is emptied only once the data has loaded.
        bool hadLog = File.Exists(paths.LogPath);
        var logFile = OpenLog();
        PreparedData data;
        try { data = Data ?? PreparedData.Load(paths.ImagesDir, paths.LabelsCsv, size, o.ZoomSourceSize, o.GrayWorld, o.Incremental); }
        catch
        {
            logFile.Dispose();
            if (!hadLog) File.Delete(paths.LogPath);
            throw;
        }
        logFile.SetLength(0);
        using var log = new StreamWriter(logFile);
        if (data.Train.Size != size) throw new ArgumentException($"prepared images are {data.Train.Size}x{data.Train.Size}, the network takes {size}x{size}");
        var (split, train, val, gains) = data;
        Say($"split: {split.Train.Count} train / {split.Validation.Count} validation / {split.Test.Count} test images (seed {split.Seed})");
        Say($"preprocessed {train.Count + val.Count} images to {size}x{size} in {total.Elapsed.TotalSeconds:F0} s; gray-world gains (R, G, B) {string.Join(", ", gains.Select(g => g.ToString("F3", System.Globalization.CultureInfo.InvariantCulture)))}");

        var trainer = new Trainer(o, progress, log);

        // 1. Float network with batch norm.
        var net = new QanaNet(o.Network, o.Seed);
        double floatF1;
        if (resumed is not null && paths.ResumeFloat is { } ckpt)
        {
            resumed.Restore(net);
            floatF1 = ClassificationMetrics.Compute(val.Labels, trainer.Predict(net, val)).MacroF1;
            Say($"resumed float weights from {ckpt}: validation macro-F1 {floatF1:F3}");
        }
        else
        {
            floatF1 = trainer.Fit("float", net, train, val, o.Epochs, o.PeakLearningRate,
                () => { var s = NetState.Capture(net); s.Save(paths.FloatCheckpoint); return s; },
                s => ((NetState)s).Restore(net), o.Patience, Math.Min(o.WarmupEpochs, o.Epochs / 10f), mixupAlpha: o.MixupAlpha);
            NetState.Capture(net).Save(paths.FloatCheckpoint);
        }

        // Precise BN for the averaged weights, kept only when validation agrees that it helps.
        if (o.EmaDecay > 0)
        {
            var before = NetState.Capture(net);
            int used = trainer.RecalibrateBatchNorm(net, train, 40);
            double recalibrated = ClassificationMetrics.Compute(val.Labels, trainer.Predict(net, val)).MacroF1;
            bool keep = recalibrated >= floatF1;
            Say($"batch-norm statistics re-estimated on {used} clean training batch{(used == 1 ? "" : "es")}: validation macro-F1 {floatF1:F3} -> {recalibrated:F3} ({(keep ? "kept" : "discarded")})");
            if (keep) floatF1 = recalibrated; else before.Restore(net);
        }

        // 1b. Embedding-space SMOTE for the head, then a brief fine-tune of the top on real images.
        SmoteStageReport? smote = null;
        if (o.Smote)
        {
            smote = SmoteStage.Run(net, train, val, o, trainer, log, Say);
            floatF1 = ClassificationMetrics.Compute(val.Labels, trainer.Predict(net, val)).MacroF1;
        }

        // 2. Fold BN, calibrate ranges, fine-tune with fake quantization.
        var scheme = new QuantScheme(o.Profile);
        var qnet = QuantNetBuilder.FromFloat(net, scheme);
        Calibrate(qnet, train, trainer);
        double fqF1 = ClassificationMetrics.Compute(val.Labels, trainer.Predict(qnet, val)).MacroF1;
        Say($"folded + fake-quantized ({o.Profile}): validation macro-F1 {fqF1:F3} (float {floatF1:F3})");
        if (o.QatEpochs > 0)
            trainer.Fit("qat", qnet, train, val, o.QatEpochs, o.QatLearningRate,
                () => Snapshot(qnet), s => Restore(qnet, (float[][])s), Math.Max(2, o.QatEpochs), 0, seedSalt: 0x5A7, startScore: fqF1);

        // 3. Convert, evaluate in integers on validation, calibrate the readout.
        var fqVal = trainer.Predict(qnet, val);
        var baseInfo = Info(o, floatF1, gains);
        var package = Converter.Convert(qnet, baseInfo);
        var (valLogits, valProbs, valPred) = RunInteger(package, val);
        int agree = 0;
        for (int i = 0; i < val.Count; i++)
            if (ClassificationMetrics.ArgMax(fqVal[i]) == valPred[i]) agree++;
        double agreement = (double)agree / val.Count;
        var fqValM = ClassificationMetrics.Compute(val.Labels, fqVal);
        var intValM = ClassificationMetrics.Compute(val.Labels, valProbs, valPred);
        Say($"integer vs fake-quant agreement on validation {agreement:P2}; top-1 {intValM.Top1:P2} vs {fqValM.Top1:P2}");

        var cal = package.Manifest.Calibration;
        var valGroups = split.Validation.Select(r => r.LesionId ?? r.ImageId).ToArray();
        var thresholdFit = ClassThresholdCalibration.FitCrossChecked(val.Labels, valLogits, valGroups, cal.ReadoutWindow, baseInfo.Threshold, cal.Beta);
        // Tiling τ from the device's own path (decode, crop, engine, readout with the fitted thresholds):
        // every validation image once as a single view and once averaged with its four tiles.
        var withThresholds = Rebuild(package, thresholdFit.Thresholds, 0.5, 0, [], new Dictionary<string, double>());
        var valPaths = split.Validation.Select(r => r.ImagePath).ToArray();
        var (valPlain, valTiled) = DevicePredictions.PlainAndTiled(withThresholds, valPaths);
        var tiling = TilingCalibration.Fit(val.Labels, valPlain.Probabilities, valTiled.Probabilities, TilingCalibration.DefaultMaxTriggerRate,
            valPlain.Predictions, valTiled.Predictions);
        var valFinal = new float[val.Count][];
        for (int i = 0; i < val.Count; i++) valFinal[i] = valPlain.Probabilities[i].Max() < tiling.Tau ? valTiled.Probabilities[i] : valPlain.Probabilities[i];
        // The referral threshold is fitted on the probabilities the device will report, tiling included.
        var referral = ReferralCalibration.Fit(val.Labels, valFinal);
        Say($"readout thresholds [{string.Join(",", thresholdFit.Thresholds)}] ({(thresholdFit.Accepted ? "kept" : "refused")}: held-out macro-F1 gain " +
            $"{thresholdFit.HeldOutGains[0]:+0.000;-0.000} / {thresholdFit.HeldOutGains[1]:+0.000;-0.000}): validation macro-F1 {thresholdFit.ObjectiveBefore:F3} -> {thresholdFit.ObjectiveAfter:F3}; " +
            $"tiling tau {tiling.Tau:F3} (validation trigger rate {tiling.TriggerRate:P1}, macro-F1 {tiling.MacroF1Plain:F3} -> {tiling.MacroF1WithTiling:F3}); referral threshold {referral.Threshold:F3} " +
            $"(validation sensitivity {referral.Sensitivity:P1}, 95 % lower bound {referral.SensitivityLowerBound:P1}, specificity {referral.Specificity:P1})");
        var calibrated = Rebuild(package, thresholdFit.Thresholds, referral.Threshold, tiling.Tau, [], new Dictionary<string, double>());
        var figures = CalibrationFigures.Write(paths.FiguresDir, tiling, TilingCalibration.DefaultMaxTriggerRate, val.Labels, valFinal,
            referral.Threshold, thresholdFit.Thresholds, baseInfo.Threshold, Classes.Codes,
            $"{calibrated.Manifest.ModelId}: {o.Epochs} float epochs, {o.QatEpochs} QAT epochs, seed {o.Seed}; validation split ({val.Count} images)");
        Say($"calibration figures in {paths.FiguresDir} ({figures.Length})");

        // 3b. Incremental learning: the readout adapted from labelled validation cases, kept only if it loses nothing on a golden set.
        var testPaths = split.Test.Select(r => r.ImagePath).ToArray();
        var testLabels = split.Test.Select(r => r.ClassIndex).ToArray();
        IncrementalReport? incremental = null;
        ClassificationMetrics? testBefore = null;
        ReferralMetrics? testRefBefore = null;
        double testTriggerBefore = double.NaN;
        if (o.Incremental)
        {
            if (EvaluateBeforeIncremental)
            {
                var (before, tb) = DevicePredictions.Classify(calibrated, testPaths);
                testBefore = ClassificationMetrics.Compute(testLabels, before.Probabilities, before.Predictions);
                testRefBefore = ReferralMetrics.Compute(testLabels, before.Probabilities, referral.Threshold);
                testTriggerBefore = tb.Count(t => t) / (double)tb.Length;
            }
            (calibrated, incremental) = IncrementalStage.Run(calibrated, val, valGroups, o, Say);
        }

        // 4. The test split, once, with the final calibration, through the device's path (tiling included).
        var (test, testTiled) = DevicePredictions.Classify(calibrated, testPaths);
        var testProbs = test.Probabilities;
        var testM = ClassificationMetrics.Compute(testLabels, testProbs, test.Predictions);
        var testRef = ReferralMetrics.Compute(testLabels, testProbs, referral.Threshold);
        double testTrigger = testTiled.Count(t => t) / (double)testTiled.Length;
        Say($"test: top-1 {testM.Top1:P2}, macro-F1 {testM.MacroF1:P2}, balanced accuracy {testM.BalancedAccuracy:P2}, tiling trigger rate {testTrigger:P1}");
        // How far the test figures can be trusted: 95 % intervals, resampling lesions (docs/evaluation.md).
        var testCi = BootstrapIntervals.Compute(testLabels, test.Predictions, split.Test.Select(r => r.LesionId).ToArray(), Classes.Count);

        var metrics = new Dictionary<string, double>
        {
            ["test_top1"] = testM.Top1, ["test_macro_f1"] = testM.MacroF1, ["test_balanced_accuracy"] = testM.BalancedAccuracy,
            ["test_macro_precision"] = testM.MacroPrecision,
            ["test_auc_macro"] = double.IsFinite(testM.AucMacro) ? testM.AucMacro : 0,
            ["test_referral_sensitivity"] = testRef.Sensitivity, ["test_referral_specificity"] = testRef.Specificity,
            ["test_tiling_trigger_rate"] = testTrigger,
            ["val_macro_f1_float"] = floatF1, ["val_top1_fake_quant"] = fqValM.Top1, ["val_top1_integer"] = intValM.Top1,
            ["val_integer_fake_quant_agreement"] = agreement, ["val_macro_f1_calibrated"] = thresholdFit.ObjectiveAfter,
            ["val_threshold_heldout_gain_fold1"] = thresholdFit.HeldOutGains[0], ["val_threshold_heldout_gain_fold2"] = thresholdFit.HeldOutGains[1],
            ["tiling_tau"] = tiling.Tau, ["val_tiling_trigger_rate"] = tiling.TriggerRate, ["val_macro_f1_tiled"] = tiling.MacroF1WithTiling,
            ["val_referral_sensitivity"] = referral.Sensitivity, ["val_referral_sensitivity_lower_bound"] = referral.SensitivityLowerBound,
            ["val_referral_specificity"] = referral.Specificity,
        };
        // No interval from fewer than two lesions (NaN, which the package's JSON cannot hold).
        if (!double.IsNaN(testCi.Top1.Low))
        {
            Say($"test 95 % intervals (bootstrap over lesions): top-1 {testCi.Top1.Low:P1}-{testCi.Top1.High:P1}, "
                + $"macro-F1 {testCi.MacroF1.Low:P1}-{testCi.MacroF1.High:P1}, balanced accuracy {testCi.BalancedAccuracy.Low:P1}-{testCi.BalancedAccuracy.High:P1}");
            metrics["test_top1_ci95_low"] = testCi.Top1.Low; metrics["test_top1_ci95_high"] = testCi.Top1.High;
            metrics["test_macro_f1_ci95_low"] = testCi.MacroF1.Low; metrics["test_macro_f1_ci95_high"] = testCi.MacroF1.High;
            metrics["test_balanced_accuracy_ci95_low"] = testCi.BalancedAccuracy.Low; metrics["test_balanced_accuracy_ci95_high"] = testCi.BalancedAccuracy.High;
        }
        if (smote is not null)
        {
            metrics["smote_synthetic"] = smote.SyntheticCounts.Sum();
            metrics["val_macro_f1_smote_head"] = smote.ValMacroF1Head;
            metrics["val_macro_f1_smote_finetune"] = smote.ValMacroF1Finetune;
        }
        if (incremental is not null)
        {
            metrics["incremental_accepted"] = incremental.Accepted ? 1 : 0;
            metrics["incremental_golden_top1_before"] = incremental.GoldenTop1Before;
            metrics["incremental_golden_top1_after"] = incremental.GoldenTop1After;
            metrics["incremental_golden_macro_f1_before"] = incremental.GoldenMacroF1Before;
            metrics["incremental_golden_macro_f1_after"] = incremental.GoldenMacroF1After;
        }
        if (testBefore is not null) metrics["test_macro_f1_before_incremental"] = testBefore.MacroF1;
        var golden = Golden(calibrated, val, 4);
        var final = Rebuild(calibrated, thresholdFit.Thresholds, referral.Threshold, tiling.Tau, golden, metrics);
        PackageWriter.Save(final, paths.OutPackage);
        WriteReport(testM, testRef, metrics, final, total.Elapsed);
        Say($"wrote {paths.OutPackage} in {Durations.Clock(total.Elapsed)}");
        return new PipelineResult(final, testM, agreement, fqValM.Top1, intValM.Top1, floatF1)
        {
            TestTilingTriggerRate = testTrigger, TestReferral = testRef, Tiling = tiling, Smote = smote, Incremental = incremental,
            TestBeforeIncremental = testBefore ?? testM,
            TestReferralBeforeIncremental = testRefBefore ?? testRef,
            TestTilingTriggerRateBeforeIncremental = testBefore is null ? testTrigger : testTriggerBefore,
        };
    }

    /// <summary>Makes the package's folder and opens the training log (.log.jsonl) beside the package for writing, as it is.</summary>
    /// <exception cref="IOException">Either cannot be made; the message names the log and the package it goes beside.</exception>
    private FileStream OpenLog()
    {
        try
        {
            Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(paths.OutPackage))!);
            return new FileStream(paths.LogPath, FileMode.OpenOrCreate, FileAccess.Write, FileShare.Read);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"cannot write the training log '{paths.LogPath}' beside the package '{paths.OutPackage}': {e.Message.ReplaceLineEndings(" ")}", e);
        }
    }

    /// <summary>Activation ranges from clean (non-augmented) training batches, then frozen.</summary>
    public static void Calibrate(QuantNet qnet, ImageSet train, Trainer trainer, int images = 512)
    {
        qnet.SetObserve(true);
        var subset = new ImageSet(train.Size, train.Pixels.Take(images).ToArray(), train.Labels.Take(images).ToArray(), train.Ids.Take(images).ToArray());
        trainer.PredictLogits(qnet, subset);
        qnet.FreezeGrids();
        qnet.SetObserve(false);
    }

    private static object Snapshot(QuantNet q) => q.Parameters.Select(p => (float[])p.Value.Clone()).ToArray();

    private static void Restore(QuantNet q, float[][] s)
    {
        int i = 0;
        foreach (var p in q.Parameters) s[i++].CopyTo(p.Value, 0);
    }

    /// <summary>The recipe's own values. Options added later are named in the provenance only when they differ, so a
    /// default run writes the same text as the runs before them.</summary>
    private static readonly TrainOptions Defaults = new();

    private ConversionInfo Info(TrainOptions o, double floatF1, float[] colorGains) => new()
    {
        ColorGains = colorGains,
        ModelId = $"qana-{o.Profile.ToString().ToLowerInvariant()}-{o.Network.InputSize}",
        Version = "1.0.0",
        Provenance = new Dictionary<string, string>
        {
            ["trainer"] = "QanaEdge.Training", ["seed"] = o.Seed.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["split_seed"] = LesionSplit.DefaultSeed.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["epochs"] = o.Epochs.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["qat_epochs"] = o.QatEpochs.ToString(System.Globalization.CultureInfo.InvariantCulture),
            // The same words as docs/ablation.md's rows, so a package names its row of the table.
            ["ablation"] = Ablation.Switches(o),
            ["recipe"] = $"AdamW wd={o.WeightDecay} lr={o.PeakLearningRate} warmup={o.WarmupEpochs} cosine,{(o.QatLearningRate != Defaults.QatLearningRate ? $" QAT lr={o.QatLearningRate}," : "")} label smoothing {o.LabelSmoothing}, balanced sampler alpha={o.SamplerAlpha},{(o.LogitAdjustTau != 0 ? $" logit-adjusted loss tau={o.LogitAdjustTau}," : "")}{(o.MixupAlpha != 0 ? $" mixup alpha={o.MixupAlpha}," : "")}{(o.Network.DropoutRate != QanaOptions.Full.DropoutRate ? $" dropout={o.Network.DropoutRate}," : "")} gray-world={o.GrayWorld}, flips+transpose+CIELAB lightness/contrast, zoom p={o.ZoomProbability} side>={o.ZoomMinSide}, weight EMA {o.EmaDecay}",
            ["data"] = Path.GetFileName(Path.GetFullPath(paths.ImagesDir).TrimEnd('/')),
        },
    };

    private static ModelPackage Rebuild(ModelPackage p, int[] thresholds, double referral, double tilingTau, GoldenVector[] golden, Dictionary<string, double> metrics)
    {
        var m = p.Manifest;
        var nodes = p.Graph.Nodes.Select(n => n.Kind != Model.Graph.OpKind.SpikingReadout ? n : new Model.Graph.Node
        {
            Name = n.Name, Kind = n.Kind, Inputs = n.Inputs, Output = n.Output, TimeSteps = n.TimeSteps, Thresholds = thresholds,
            Reparameterisation = n.Reparameterisation, Kernel = n.Kernel,
        }).ToArray();
        var graph = new Model.Graph.ModelGraph { Tensors = p.Graph.Tensors, Nodes = nodes, InputTensor = p.Graph.InputTensor, LogitsTensor = p.Graph.LogitsTensor, OutputTensor = p.Graph.OutputTensor };
        var manifest = new ModelManifest
        {
            ModelId = m.ModelId, Version = m.Version, CreatedUtc = m.CreatedUtc, Classes = m.Classes, Input = m.Input, Profile = m.Profile,
            Layers = m.Layers, ConversionSuccessRate = m.ConversionSuccessRate, Metrics = metrics,
            Calibration = new Model.Packaging.Calibration
            {
                ReadoutWindow = m.Calibration.ReadoutWindow, Thresholds = thresholds, Beta = m.Calibration.Beta, StepWeights = m.Calibration.StepWeights,
                TilingTau = tilingTau, ReferralThreshold = referral, SaliencyFlatCv = m.Calibration.SaliencyFlatCv,
            },
            Golden = golden, Provenance = m.Provenance,
        };
        var result = new ModelPackage { Manifest = manifest, Graph = graph };
        PackageValidator.Validate(result);
        return result;
    }

    /// <summary>Runs the integer engine on every image: int8 logits, readout probabilities and the device's decisions
    /// (<see cref="SpikingReadout.Decide"/>: ties, where the readout saturates, go to the higher logit).</summary>
    public static (sbyte[][] Logits, float[][] Probabilities, int[] Predictions) RunInteger(ModelPackage package, ImageSet set)
    {
        var logits = new sbyte[set.Count][];
        var probs = new float[set.Count][];
        var predictions = new int[set.Count];
        int workers = Math.Max(1, Math.Min(Par.Threads, 4));
        var engines = Enumerable.Range(0, workers).Select(_ => IntegerEngine.Create(package)).ToArray();
        // The package's own input quantization, as the device applies it (q = p − 128 only on the default grid).
        var spec = package.Graph.Tensors[package.Graph.InputTensor];
        try
        {
            Parallel.For(0, workers, new ParallelOptions { MaxDegreeOfParallelism = workers }, w =>
            {
                var engine = engines[w];
                var input = new sbyte[set.Size * set.Size * 3];
                for (int i = w; i < set.Count; i += workers)
                {
                    InputQuantizer.Quantize(set.Pixels[i], input, spec.Scale, spec.ZeroPoint);
                    engine.Run(input);
                    logits[i] = engine.Logits.ToArray();
                    probs[i] = new float[logits[i].Length];
                    engine.GetProbabilities(probs[i]);
                    predictions[i] = SpikingReadout.Decide(probs[i], logits[i]);
                }
            });
        }
        finally { foreach (var e in engines) e.Dispose(); }
        return (logits, probs, predictions);
    }

    /// <summary>Self-test vectors: the first validation images, quantized as the package's input tensor says.</summary>
    internal static GoldenVector[] Golden(ModelPackage package, ImageSet val, int count)
    {
        var spec = package.Graph.Tensors[package.Graph.InputTensor];
        return GoldenVectors.Record(package, Enumerable.Range(0, Math.Min(count, val.Count)).Select(i =>
        {
            var input = new sbyte[val.Size * val.Size * 3];
            InputQuantizer.Quantize(val.Pixels[i], input, spec.Scale, spec.ZeroPoint);
            return input;
        }));
    }

    /// <summary>The report's opening sentence: the split, the path the test split went through, and how long training took.</summary>
    internal static string Provenance(TimeSpan elapsed) => string.Create(System.Globalization.CultureInfo.InvariantCulture,
        $"Lesion-grouped, stratified 70/10/20 split (seed {LesionSplit.DefaultSeed}); the test split was evaluated once, through the device's path (decode, centred crop, integer engine, calibrated spiking readout, tiling fallback under τ). Training took {Durations.Clock(elapsed)}.");

    private void WriteReport(ClassificationMetrics m, ReferralMetrics referral, Dictionary<string, double> metrics, ModelPackage p, TimeSpan elapsed)
    {
        var codes = Classes.Codes;
        var sb = new System.Text.StringBuilder();
        var ci = System.Globalization.CultureInfo.InvariantCulture;
        sb.Append(ci, $"# {p.Manifest.ModelId} {p.Manifest.Version}: evaluation on the internal test split\n\n");
        sb.Append(Provenance(elapsed)).Append("\n\n");
        sb.Append(ci, $"| metric | value |\n|---|---|\n| images | {m.N} |\n| top-1 | {m.Top1:P2} |\n| macro-F1 | {m.MacroF1:P2} |\n| balanced accuracy | {m.BalancedAccuracy:P2} |\n| macro AUC | {m.AucMacro:F3} |\n| referral sensitivity / specificity | {referral.Sensitivity:P1} / {referral.Specificity:P1} |\n");
        var cal = p.Manifest.Calibration;
        sb.Append(ci, $"| tiling τ (fitted on validation) | {cal.TilingTau:F3} |\n| tiling trigger rate, validation / test | {metrics.GetValueOrDefault("val_tiling_trigger_rate"):P1} / {metrics.GetValueOrDefault("test_tiling_trigger_rate"):P1} |\n");
        sb.Append(ci, $"| per-class readout thresholds ({string.Join(", ", p.Manifest.Classes)}) | {string.Join(", ", cal.Thresholds)} |\n| referral threshold | {cal.ReferralThreshold:F3} |\n\n");
        sb.Append("| class | precision | recall | F1 | support |\n|---|---|---|---|---|\n");
        foreach (var c in m.PerClass) sb.Append(ci, $"| {c.Code} | {c.Precision:F3} | {c.Recall:F3} | {c.F1:F3} | {c.Support} |\n");
        sb.Append("\nConfusion matrix (rows: truth, columns: prediction)\n\n| |" + string.Join("|", codes) + "|\n|---|" + string.Concat(codes.Select(_ => "---|")) + "\n");
        for (int t = 0; t < codes.Count; t++)
        {
            sb.Append(ci, $"| {codes[t]} |");
            for (int q = 0; q < codes.Count; q++) sb.Append(ci, $" {m.Confusion[t, q]} |");
            sb.Append('\n');
        }
        sb.Append("\nOther figures (validation unless named test)\n\n| key | value |\n|---|---|\n");
        foreach (var (k, v) in metrics) sb.Append(ci, $"| {k} | {v:F4} |\n");
        WholeFile.Write(paths.ReportMarkdownPath, Encoding.UTF8.GetBytes(sb.ToString()), WholeFileOptions.UserOutput);
        var json = new Dictionary<string, object>
        {
            ["n"] = m.N, ["top1"] = m.Top1, ["macro_f1"] = m.MacroF1, ["balanced_accuracy"] = m.BalancedAccuracy,
            ["auc_macro"] = double.IsFinite(m.AucMacro) ? m.AucMacro : 0,
            ["per_class"] = m.PerClass.Select(c => new Dictionary<string, object> { ["class"] = c.Code, ["precision"] = c.Precision, ["recall"] = c.Recall, ["f1"] = c.F1, ["support"] = c.Support }).ToArray(),
            ["confusion"] = Enumerable.Range(0, codes.Count).Select(t => Enumerable.Range(0, codes.Count).Select(q => m.Confusion[t, q]).ToArray()).ToArray(),
            ["metrics"] = metrics,
        };
        WholeFile.Write(paths.ReportPath, JsonSerializer.SerializeToUtf8Bytes(json, TrainingJson.Default.DictionaryStringObject), WholeFileOptions.UserOutput);
    }
}
