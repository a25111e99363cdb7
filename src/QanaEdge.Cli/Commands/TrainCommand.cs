using System.CommandLine;
using QanaEdge.Model;
using QanaEdge.Training.Data;
using QanaEdge.Training.Engine;
using QanaEdge.Training.Network;
using QanaEdge.Training.Pipeline;

namespace QanaEdge.Cli.Commands;

/// <summary>
/// <c>qana train --data DIR --labels CSV --out PKG [--epochs N] [--seed S] [--profile paper8|akd1000]
/// [--input-size 64] [--learning-rate 0.004] [--qat-learning-rate 0.0002] [ablation switches: --baseline --no-ghost --no-eca --no-se --no-quant-head --pooled-head --no-gray-world --smote --incremental]</c>: trains, quantizes and converts a QANA, writing PKG, PKG's
/// training log (.log.jsonl), the float checkpoint (.float.ckpt) and the test report (.report.md/.json).
/// A live progress line goes to standard error.
/// </summary>
public sealed class TrainCommand : IVerb
{
    public Command Create(CliContext context)
    {
        var data = new Option<string>("--data") { Description = "folder of the images (IMAGE_ID.jpg)" };
        var labels = new Option<string>("--labels") { Description = "HAM10000 metadata CSV (image_id, lesion_id, dx)" };
        var output = new Option<string>("--out") { Description = "package to write (.qana)" };
        var epochs = new Option<int>("--epochs") { Description = "float training epochs (cosine schedule length)", DefaultValueFactory = _ => 60 };
        var qatEpochs = new Option<int>("--qat-epochs") { Description = "quantization-aware fine-tuning epochs", DefaultValueFactory = _ => 3 };
        var seed = new Option<ulong>("--seed") { Description = "seed of initialisation, sampling, augmentation and dropout", DefaultValueFactory = _ => 1 };
        var profile = new Option<string>("--profile") { Description = "paper8 or akd1000", DefaultValueFactory = _ => "paper8" };
        var inputSize = new Option<int>("--input-size") { Description = "square input side (multiple of 8, 16..128)", DefaultValueFactory = _ => 64 };
        var batch = new Option<int>("--batch-size") { Description = "mini-batch size", DefaultValueFactory = _ => 64 };
        var threads = new Option<int>("--threads") { Description = "worker threads (default: all cores)", DefaultValueFactory = _ => Environment.ProcessorCount };
        var patience = new Option<int>("--patience") { Description = "early-stopping patience in epochs (validation macro-F1)", DefaultValueFactory = _ => 15 };
        var resume = new Option<string?>("--resume-float") { Description = "start from a float checkpoint (.float.ckpt) instead of training the float phase" };
        var baseline = new Option<bool>("--baseline") { Description = "ablation baseline: no Ghost, ECA, SE; head quantized after training" };
        var noGhost = new Option<bool>("--no-ghost") { Description = "separable convolution instead of the Ghost module" };
        var noEca = new Option<bool>("--no-eca") { Description = "without the SA-ECA gates" };
        var noSe = new Option<bool>("--no-se") { Description = "without the squeeze-and-excitation gate" };
        var samplerAlpha = new Option<double>("--sampler-alpha") { Description = "class sampler exponent: class c drawn ∝ n_c^alpha (1 = natural frequencies)", DefaultValueFactory = _ => new TrainOptions().SamplerAlpha };
        var logitAdjust = new Option<double>("--logit-adjust") { Description = "tau of the logit-adjusted loss (tau·log prior added to the logits inside the loss; 0 = off)", DefaultValueFactory = _ => 0 };
        var learningRate = new Option<float>("--learning-rate") { Description = "peak learning rate of the float phase (AdamW; linear warm-up, then cosine decay to 1 %)", DefaultValueFactory = _ => new TrainOptions().PeakLearningRate };
        var qatLearningRate = new Option<float>("--qat-learning-rate") { Description = "learning rate of the quantization-aware fine-tuning (cosine decay to 1 %)", DefaultValueFactory = _ => new TrainOptions().QatLearningRate };
        var weightDecay = new Option<float>("--weight-decay") { Description = "AdamW decoupled weight decay", DefaultValueFactory = _ => new TrainOptions().WeightDecay };
        var mixup = new Option<double>("--mixup") { Description = "mixup in the float phase: Beta(a, a) mixing weight, a in (0, 1] (0 = off)", DefaultValueFactory = _ => 0 };
        var labelSmoothing = new Option<float>("--label-smoothing") { Description = "label smoothing of the cross-entropy, in [0, 0.5)", DefaultValueFactory = _ => new TrainOptions().LabelSmoothing };
        var zoom = new Option<double>("--zoom-probability") { Description = "probability that a training image is a zoomed view (random square of side 0.67-1 of the crop)", DefaultValueFactory = _ => new TrainOptions().ZoomProbability };
        var dropout = new Option<float>("--dropout") { Description = "dropout rate after each block's batch norm, in [0, 0.5]", DefaultValueFactory = _ => QanaOptions.Full.DropoutRate };
        var throughput = new Option<int>("--throughput-steps") { Description = "only measure training images/s on a synthetic batch for N steps (no data needed) and exit" };
        var noGrayWorld = new Option<bool>("--no-gray-world") { Description = "without gray-world colour gains (fitted on the training split otherwise)" };
        var pooledHead = new Option<bool>("--pooled-head") { Description = "global-average-pool the final feature map before the linear head (instead of flattening it)" };
        var noQuantHead = new Option<bool>("--no-quant-head") { Description = "head not fake-quantized during QAT (quantized at conversion only)" };
        var smote = new Option<bool>("--smote") { Description = "after the float phase: embedding-space SMOTE for the head (5 epochs), then a brief fine-tune of the last block and head" };
        var incremental = new Option<bool>("--incremental") { Description = "after calibration: learn the readout from half of the validation split, kept only if the other half loses no accuracy" };
        var incrementalRate = new Option<float>("--incremental-learning-rate") { Description = "Adam step size of the readout learner in the incremental stage, in (0, 1]", DefaultValueFactory = _ => new TrainOptions().IncrementalLearningRate };
        var incrementalEpochs = new Option<int>("--incremental-epochs") { Description = "passes over the labelled half of validation in the incremental stage", DefaultValueFactory = _ => new TrainOptions().IncrementalEpochs };
        var command = new Command("train", "Train a QANA on HAM10000-style data and convert it to an integer package.")
        {
            data, labels, output, throughput, epochs, qatEpochs, seed, profile, inputSize, batch, threads, patience, resume, baseline, noGhost, noEca, noSe, noQuantHead, pooledHead, noGrayWorld, smote, incremental, incrementalRate, incrementalEpochs, samplerAlpha, logitAdjust, learningRate, qatLearningRate, weightDecay, mixup, labelSmoothing, zoom, dropout,
        };
        command.SetAction(parse =>
        {
            var prof = parse.GetValue(profile) switch
            {
                "paper8" => QuantizationProfile.Paper8,
                "akd1000" => QuantizationProfile.Akd1000,
                var p => throw new UsageException($"--profile must be paper8 or akd1000, not '{p}'"),
            };
            int size = parse.GetValue(inputSize);
            if (size < 16 || size > 128 || size % 8 != 0) throw new UsageException("--input-size must be a multiple of 8 in [16, 128]");
            int e = parse.GetValue(epochs), q = parse.GetValue(qatEpochs), b = parse.GetValue(batch);
            if (e < 1 || q < 0 || b < 2) throw new UsageException("--epochs must be >= 1, --qat-epochs >= 0, --batch-size >= 2");
            double alpha = parse.GetValue(samplerAlpha), tau = parse.GetValue(logitAdjust);
            float wd = parse.GetValue(weightDecay);
            // Written as "not in range" so that NaN, which compares false with everything, is refused too.
            if (alpha is not (>= 0 and <= 1)) throw new UsageException("--sampler-alpha must be in [0, 1]");
            if (tau is not (>= 0 and <= 2)) throw new UsageException("--logit-adjust must be in [0, 2]");
            if (wd is not (>= 0 and <= 1)) throw new UsageException("--weight-decay must be in [0, 1]");
            // Any positive finite rate: one too large makes the run diverge, which stops it in one line naming the switch.
            float peakLr = parse.GetValue(learningRate), qatLr = parse.GetValue(qatLearningRate);
            if (peakLr is not (> 0 and <= float.MaxValue)) throw new UsageException("--learning-rate must be a positive finite number");
            if (qatLr is not (> 0 and <= float.MaxValue)) throw new UsageException("--qat-learning-rate must be a positive finite number");
            double mix = parse.GetValue(mixup);
            if (mix is not (>= 0 and <= 1)) throw new UsageException("--mixup must be in [0, 1]");
            float smoothing = parse.GetValue(labelSmoothing);
            if (smoothing is not (>= 0 and < 0.5f)) throw new UsageException("--label-smoothing must be in [0, 0.5)");
            double zoomP = parse.GetValue(zoom);
            if (zoomP is not (>= 0 and <= 1)) throw new UsageException("--zoom-probability must be in [0, 1]");
            float drop = parse.GetValue(dropout);
            if (drop is not (>= 0 and <= 0.5f)) throw new UsageException("--dropout must be in [0, 0.5]");
            float incRate = parse.GetValue(incrementalRate);
            if (incRate is not (> 0 and <= 1)) throw new UsageException("--incremental-learning-rate must be in (0, 1]");
            int incEpochs = parse.GetValue(incrementalEpochs);
            if (incEpochs < 1) throw new UsageException("--incremental-epochs must be at least 1");
            int patienceEpochs = parse.GetValue(patience);
            if (patienceEpochs < 1) throw new UsageException("--patience must be at least 1");
            // Refused rather than raised to 1: a run silently on one thread takes several times as long.
            int workers = parse.GetValue(threads);
            if (workers < 1) throw new UsageException("--threads must be at least 1");
            Par.Threads = workers;
            // Built before the throughput branch, which measured the full network whatever the switches said.
            var net = parse.GetValue(baseline) ? QanaOptions.Baseline : QanaOptions.Full;
            net = net with
            {
                InputSize = size,
                Ghost = net.Ghost && !parse.GetValue(noGhost),
                Eca = net.Eca && !parse.GetValue(noEca),
                Se = net.Se && !parse.GetValue(noSe),
                QuantHead = net.QuantHead && !parse.GetValue(noQuantHead),
                PooledHead = parse.GetValue(pooledHead),
                DropoutRate = drop,
            };
            int steps = parse.GetValue(throughput);
            if (steps < 0) throw new UsageException("--throughput-steps must be positive (or left out)");
            if (steps > 0)
            {
                var r = TrainingThroughput.Measure(net, b, steps);
                context.Out.WriteLine(System.FormattableString.Invariant(
                    $"{{\"engine\":\"qanaedge\",\"batch\":{r.Batch},\"threads\":{r.Threads},\"steps\":{r.Steps},\"seconds\":{r.Seconds:F3},\"images_per_s\":{r.ImagesPerSecond:F1},\"cpu_seconds\":{r.CpuSeconds:F2},\"vector_lanes\":{Kernels.Lanes},\"parameters\":{r.Parameters}}}"));
                return Cli.Ok;
            }
            string images = parse.GetValue(data) ?? throw new UsageException("--data is required");
            string csv = parse.GetValue(labels) ?? throw new UsageException("--labels is required");
            if (parse.GetValue(output) is not { } outPackage) throw new UsageException("--out is required");
            // The package is written after the whole run: a folder named here must fail now, not hours later.
            Files.RefuseFolder(outPackage, "--out");
            Files.RefuseInputAsOutput(outPackage, "--out", csv, "--labels", "the package would replace the labels");
            if (ExpectedPath.FolderProblem(images) is { } noFolder) throw new CommandFailedException($"image folder '{images}' {noFolder}");
            if (ExpectedPath.FileProblem(csv) is { } noFile) throw new CommandFailedException($"labels file '{csv}' {noFile}");
            string? resumeFrom = parse.GetValue(resume);
            if (resumeFrom is not null && ExpectedPath.FileProblem(resumeFrom) is { } noCheckpoint)
                throw new CommandFailedException($"checkpoint '{resumeFrom}' {noCheckpoint}");
            var options = new TrainOptions
            {
                Network = net, Profile = prof, Seed = parse.GetValue(seed), Epochs = e, QatEpochs = q, BatchSize = b,
                Patience = patienceEpochs, Smote = parse.GetValue(smote), Incremental = parse.GetValue(incremental),
                GrayWorld = !parse.GetValue(noGrayWorld), SamplerAlpha = alpha, LogitAdjustTau = tau, PeakLearningRate = peakLr, QatLearningRate = qatLr, WeightDecay = wd, MixupAlpha = mix, LabelSmoothing = smoothing,
                ZoomProbability = zoomP, IncrementalLearningRate = incRate, IncrementalEpochs = incEpochs,
            };
            var paths = new PipelinePaths { ImagesDir = images, LabelsCsv = csv, OutPackage = outPackage, ResumeFloat = resumeFrom };
            var progress = new ProgressLine(context.Err, ProgressLine.CanRedraw(context.Err), ProgressLine.Columns(context.Err));
            try
            {
                var result = new TrainingPipeline(options, paths, progress.Update).Run();
                progress.Done();
                context.Out.WriteLine($"wrote {paths.OutPackage}: test top-1 {result.Test.Top1:P2}, macro-F1 {result.Test.MacroF1:P2}, balanced accuracy {result.Test.BalancedAccuracy:P2}; integer/fake-quant agreement {result.ValidationAgreement:P2}; tiling τ {result.Package.Manifest.Calibration.TilingTau:F3} (test trigger rate {result.TestTilingTriggerRate:P1})");
            }
            finally { progress.Done(); } // a data set that cannot be used (DatasetException) is reported by Cli.Report
            return Cli.Ok;
        });
        return command;
    }
}
