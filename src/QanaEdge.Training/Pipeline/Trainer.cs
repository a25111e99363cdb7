using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using QanaEdge.Imaging;
using QanaEdge.Runtime;
using QanaEdge.Training.Data;
using QanaEdge.Training.Engine;
using QanaEdge.Training.Evaluation;
using QanaEdge.Training.Network;

namespace QanaEdge.Training.Pipeline;

/// <summary>One epoch's record in the training log (JSON lines).</summary>
public sealed record EpochRecord(string Phase, int Epoch, double TrainLoss, double LearningRate, double ValTop1,
    double ValMacroF1, double ValBalancedAccuracy, double Seconds, double ImagesPerSecond, bool Best);

/// <summary>
/// Mini-batch training loop shared by the float and the quantization-aware phases: class-balanced sampling,
/// seeded augmentation, label-smoothed cross-entropy, AdamW with warm-up + cosine decay, validation
/// macro-F1 after every epoch with early stopping (the best epoch's weights are kept).
/// </summary>
public sealed class Trainer
{
    private readonly TrainOptions _o;
    private readonly Action<string>? _progress;
    private readonly TextWriter? _log;
    private readonly Tape _tape = new();
    private readonly Tensor _x = new() { RequiresGrad = false };
    private readonly Tensor _evalX = new() { RequiresGrad = false };
    private readonly Tensor _mixSource = new() { RequiresGrad = false };
    private int[] _mixPerm = [];

    public List<EpochRecord> History { get; } = [];

    public Trainer(TrainOptions options, Action<string>? progress = null, TextWriter? log = null)
    {
        _o = options; _progress = progress; _log = log;
    }

    /// <summary>
    /// Trains <paramref name="net"/> for <paramref name="epochs"/> epochs at peak rate <paramref name="peakLr"/>;
    /// <paramref name="capture"/>/<paramref name="restore"/> keep and put back the best epoch's state.
    /// Returns the best validation macro-F1. With <paramref name="startScore"/> (the network's validation
    /// macro-F1 before this phase) the starting weights compete too: a phase that only makes things worse,
    /// such as a fine-tune whose first epoch loses more than it gains, leaves the network as it found it.
    /// </summary>
    public double Fit(string phase, ITrainable net, ImageSet train, ImageSet val, int epochs, float peakLr,
        Func<object> capture, Action<object> restore, int patience, float warmupEpochs, ulong seedSalt = 0,
        double? startScore = null, double mixupAlpha = 0)
    {
        int k = Model.Classes.Count;
        int batches = (train.Count + _o.BatchSize - 1) / _o.BatchSize;
        var schedule = new CosineSchedule(peakLr, (long)(warmupEpochs * batches), (long)epochs * batches);
        var opt = new AdamW(net.Parameters) { WeightDecay = _o.WeightDecay };
        var loss = new SoftmaxCrossEntropy { LabelSmoothing = _o.LabelSmoothing, LogitOffsets = LogitOffsets(train.Labels, k, _o.LogitAdjustTau) };
        var stop = new EarlyStopping(patience);
        var average = _o.EmaDecay > 0 ? new WeightAverage(net.Parameters, _o.EmaDecay) : null;
        object best = capture();
        if (startScore is { } initial) stop.Observe(0, initial);
        var labels = new int[_o.BatchSize];
        var mixLabels = new int[_o.BatchSize];
        long step = 0;
        var total = Stopwatch.StartNew();
        for (int epoch = 1; epoch <= epochs; epoch++)
        {
            var sw = Stopwatch.StartNew();
            int[] order = ClassBalance.BalancedEpoch(train.Labels, k, _o.Seed ^ seedSalt, epoch, _o.SamplerAlpha);
            double lossSum = 0; int seen = 0, lastBatch = 0; float lr = 0;
            for (int b = 0; b < batches; b++)
            {
                int start = b * _o.BatchSize, n = Math.Min(_o.BatchSize, order.Length - start);
                if (n < 2) break; // batch statistics need at least two samples
                FillBatch(train, order.AsSpan(start, n), epoch, labels, augment: true);
                _tape.Training = true;
                _tape.Step = (ulong)step ^ (_o.Seed << 32) ^ seedSalt;
                float lambda = mixupAlpha > 0 ? MixBatch(n, labels, mixLabels, mixupAlpha, _tape.Step) : 0f;
                Tensor logits;
                // A fake-quantized network sets each layer's requantization multiplier from its weights at every forward
                // pass; steps that grew the weights beyond what an int32 multiplier can express end there (a QAT rate of
                // 1e30 did, as an internal error). The phase's first forward pass is the network it was given: not caught.
                try { logits = net.Forward(_tape, _x); }
                catch (InvalidGraphException e) when (step > 0) { throw TrainingDivergedException.OutOfIntegerRange(phase, epoch, b + 1, e); }
                float l = loss.Forward(logits, labels.AsSpan(0, n), (lambda > 0 ? mixLabels : labels).AsSpan(0, n), lambda);
                // A NaN or infinite loss means the weights are lost; stop here, naming where, rather than at the next
                // validation's NaN scores. A comparison only: the arithmetic of a finite step is unchanged.
                if (!float.IsFinite(l)) throw new TrainingDivergedException(phase, epoch, b + 1, l);
                _tape.Backward();
                lr = schedule.At(step);
                opt.Step(lr);
                average?.Update();
                step++;
                lastBatch = b + 1;
                lossSum += l * n; seen += n;
                if (_progress is not null && (b % 4 == 0 || b == batches - 1))
                {
                    double perBatch = total.Elapsed.TotalSeconds / step;
                    long remaining = (long)epochs * batches - step;
                    _progress($"{phase} epoch {epoch}/{epochs} batch {b + 1}/{batches} loss {lossSum / seen:F4} " +
                              $"val-F1 {(History.Count > 0 ? History[^1].ValMacroF1.ToString("F3", CultureInfo.InvariantCulture) : "-")} " +
                              $"ETA {Durations.Clock(TimeSpan.FromSeconds(perBatch * remaining))}");
                }
            }
            double trainSeconds = sw.Elapsed.TotalSeconds;
            average?.Swap(); // validate, and keep, the averaged weights
            // ... with batch-norm statistics of their own (TrainOptions.PreciseBnBatches); training resumes with its own.
            NetState? live = null;
            if (average is not null && net is QanaNet floatNet && _o.PreciseBnBatches > 0)
            {
                live = NetState.Capture(floatNet);
                RecalibrateBatchNorm(floatNet, train, _o.PreciseBnBatches);
            }
            float[][] probs;
            try { probs = Predict(net, val, flips: false); }
            catch (InvalidGraphException e) when (step > 0) { throw TrainingDivergedException.OutOfIntegerRange(phase, epoch, lastBatch, e); }
            // Weights can grow enough for the forward pass to overflow on validation (or in the batch-norm re-estimation
            // before it) while every training loss stayed finite: --learning-rate 1000 on a small set did, and ended in
            // an internal error about a NaN score. A comparison per output only: what is measured and kept is unchanged.
            if (!AllFinite(probs)) throw TrainingDivergedException.ValidationNotFinite(phase, epoch, lastBatch);
            var m = ClassificationMetrics.Compute(val.Labels, probs);
            bool isBest = stop.Observe(epoch, m.MacroF1);
            if (isBest) best = capture();
            live?.Restore((QanaNet)net); // the averaged weights as they were, with training's statistics
            average?.Swap();
            var rec = new EpochRecord(phase, epoch, lossSum / Math.Max(1, seen), lr, m.Top1, m.MacroF1, m.BalancedAccuracy,
                sw.Elapsed.TotalSeconds, seen / trainSeconds, isBest);
            History.Add(rec);
            _log?.WriteLine(JsonSerializer.Serialize(rec, TrainingJson.Default.EpochRecord));
            _log?.Flush();
            // A line of its own for each epoch: the batch line is redrawn over on a terminal and dropped off one, so
            // without it a run's validation scores reached standard error only through the next batch line's val-F1.
            _progress?.Invoke(EpochLine(rec, epochs, stop.ShouldStop && epoch < epochs ? patience : 0));
            if (stop.ShouldStop) break;
        }
        restore(best);
        return stop.Best;
    }

    /// <summary>
    /// An epoch's summary as the progress callback receives it ("float epoch 3/60: loss ..., validation ..."). It holds no
    /// " batch ", which is how the CLI's progress line tells the live batch line from the lines that stay.
    /// </summary>
    /// <param name="stoppedAfter">The patience that ran out with this epoch, ending the phase early (0: it did not).</param>
    internal static string EpochLine(EpochRecord r, int epochs, int stoppedAfter) => FormattableString.Invariant(
        $"{r.Phase} epoch {r.Epoch}/{epochs}: loss {r.TrainLoss:F4}, validation top-1 {100 * r.ValTop1:F1}%, macro-F1 {r.ValMacroF1:F3}, balanced accuracy {100 * r.ValBalancedAccuracy:F1}%{(r.Best ? " (best so far)" : "")}, {r.Seconds:F0} s{(stoppedAfter > 0 ? $"; stopping early: no better validation macro-F1 in {stoppedAfter} epochs" : "")}");

    /// <summary>
    /// Mixup of the batch in <c>_x</c>: sample i becomes (1 − λ)·x_i + λ·x_π(i) for a seeded permutation π and
    /// λ ~ Beta(a, a) drawn once per step; <paramref name="mixLabels"/>[i] = labels[π(i)]. Returns λ.
    /// </summary>
    private float MixBatch(int n, int[] labels, int[] mixLabels, double alpha, ulong step)
    {
        var rng = SeededRandom.For(_o.Seed, step, 0x313C);
        float lambda = (float)rng.NextSymmetricBeta(alpha);
        if (_mixPerm.Length < n) _mixPerm = new int[n];
        int[] perm = _mixPerm;
        for (int i = 0; i < n; i++) perm[i] = i;
        rng.Shuffle(perm.AsSpan(0, n));
        int per = _x.PerSample;
        _mixSource.Reshape(n, _x.H, _x.W, _x.C);
        _x.Data.AsSpan(0, n * per).CopyTo(_mixSource.Data);
        Par.ForEach(n, i =>
        {
            var dst = _x.Data.AsSpan(i * per, per);
            var other = _mixSource.Data.AsSpan(perm[i] * per, per);
            System.Numerics.Tensors.TensorPrimitives.Lerp(dst, other, lambda, dst);
        });
        for (int i = 0; i < n; i++) mixLabels[i] = labels[perm[i]];
        return lambda;
    }

    /// <summary>τ·log π_c of the training labels for the logit-adjusted loss (null when τ = 0).</summary>
    public static float[]? LogitOffsets(ReadOnlySpan<int> labels, int classCount, double tau)
    {
        if (tau == 0) return null;
        var counts = new int[classCount];
        foreach (int y in labels) counts[y]++;
        var offsets = new float[classCount];
        for (int c = 0; c < classCount; c++)
            offsets[c] = (float)(tau * Math.Log(Math.Max(1, counts[c]) / (double)labels.Length));
        return offsets;
    }

    /// <summary>
    /// Copies images (augmented when training) into the input batch as floats in [0, 1]. The augmentation is seeded
    /// by (epoch, image), so an image the class sampler draws several times in an epoch gets the same view each
    /// time (1,320 of 4,816 draws an epoch on the shipped split). Seeding by the draw instead changes the shipped
    /// model, so it waits for a retrain measured against the shipped one.
    /// </summary>
    private void FillBatch(ImageSet set, ReadOnlySpan<int> indices, int epoch, int[] labels, bool augment)
    {
        int s = set.Size, n = indices.Length, per = s * s * 3;
        _x.Reshape(n, s, s, 3);
        var idx = indices.ToArray();
        Par.ForEach(n, i =>
        {
            int img = idx[i];
            var dst = _x.Data.AsSpan(i * per, per);
            if (!augment) { ToUnitRange(set.Pixels[img], dst); return; }
            var rng = SeededRandom.For(_o.Seed, (ulong)epoch, (ulong)img);
            var p = Augmentation.Draw(ref rng);
            if (set.ZoomPixels is { } zoom && rng.NextBool(_o.ZoomProbability))
                ZoomedView(zoom[img], set.ZoomSize, s, ref rng, dst);
            else
                ToUnitRange(set.Pixels[img], dst);
            Augmentation.Apply(dst, s, s, p);
            if (_o.Transpose && rng.NextBool(0.5)) TransposeInPlace(dst, s);
        });
        for (int i = 0; i < n; i++) labels[i] = set.Labels[idx[i]];
    }

    /// <summary>
    /// Re-estimates every batch norm's running statistics as the plain average over <paramref name="batches"/>
    /// clean (not augmented) training batches in a seeded order ("precise BN"). The statistics gathered while
    /// training follow the weights of each moment, but the weights kept are an average of those
    /// (<see cref="TrainOptions.EmaDecay"/>), whose activations have statistics of their own; BN folding
    /// bakes whichever statistics the network holds into the integer model.
    /// </summary>
    /// <returns>The number of batches used: <paramref name="batches"/>, or fewer when the set holds fewer whole batches.</returns>
    public int RecalibrateBatchNorm(QanaNet net, ImageSet set, int batches)
    {
        var norms = net.BatchNorms.ToArray();
        var saved = norms.Select(b => b.Momentum).ToArray();
        // Dropout off: the statistics are those of the network as it runs at inference.
        var dropouts = net.Blocks.Select(b => b.Drop).ToArray();
        var rates = dropouts.Select(d => d.Rate).ToArray();
        foreach (var d in dropouts) d.Rate = 0;
        var order = Enumerable.Range(0, set.Count).ToArray();
        var rng = SeededRandom.For(_o.Seed, 0xB47C, 0);
        rng.Shuffle(order.AsSpan());
        int s = set.Size, per = s * s * 3;
        batches = Math.Min(batches, set.Count / _o.BatchSize);
        try
        {
            for (int b = 0; b < batches; b++)
            {
                foreach (var bn in norms) bn.Momentum = 1f / (b + 1); // cumulative average of the batch statistics
                _x.Reshape(_o.BatchSize, s, s, 3);
                Par.ForEach(_o.BatchSize, i => ToUnitRange(set.Pixels[order[b * _o.BatchSize + i]], _x.Data.AsSpan(i * per, per)));
                net.Forward(new Tape { Training = true, Step = (ulong)b ^ 0xB47C }, _x);
            }
        }
        finally
        {
            for (int i = 0; i < norms.Length; i++) norms[i].Momentum = saved[i];
            for (int i = 0; i < dropouts.Length; i++) dropouts[i].Rate = rates[i];
        }
        return batches;
    }

    /// <summary>A random square of side [ZoomMinSide, 1] × the zoom view at a random position, area-resampled
    /// (the device's resampler) to the input size, into <paramref name="dst"/> as floats in [0, 1].</summary>
    private void ZoomedView(byte[] source, int sourceSize, int size, ref SeededRandom rng, Span<float> dst)
    {
        int min = Math.Max(size, (int)Math.Ceiling(_o.ZoomMinSide * sourceSize));
        int side = min + rng.NextInt(sourceSize - min + 1);
        int x = rng.NextInt(sourceSize - side + 1), y = rng.NextInt(sourceSize - side + 1);
        Span<byte> view = stackalloc byte[size * size * 3];
        Resampler.AreaResize(source, sourceSize, new CropBox(x, y, side), size, view);
        ToUnitRange(view, dst);
    }

    /// <summary>HWC bytes to the network's input range [0, 1] (the one conversion every batch goes through).</summary>
    private static void ToUnitRange(ReadOnlySpan<byte> src, Span<float> dst)
    {
        for (int j = 0; j < src.Length; j++) dst[j] = src[j] * (1f / 255f);
    }

    private static void TransposeInPlace(Span<float> hwc, int s)
    {
        for (int y = 0; y < s; y++)
            for (int x = y + 1; x < s; x++)
                for (int c = 0; c < 3; c++)
                    (hwc[(y * s + x) * 3 + c], hwc[(x * s + y) * 3 + c]) = (hwc[(x * s + y) * 3 + c], hwc[(y * s + x) * 3 + c]);
    }

    private static bool AllFinite(float[][] rows)
    {
        foreach (float[] row in rows)
            foreach (float v in row)
                if (!float.IsFinite(v)) return false;
        return true;
    }

    /// <summary>Class probabilities (eval mode); with <paramref name="flips"/> the softmax of the mean logits over four flips.</summary>
    public float[][] Predict(ITrainable net, ImageSet set, bool flips = false)
    {
        var logits = PredictLogits(net, set, flips);
        return logits.Select(Softmax).ToArray();
    }

    public float[][] PredictLogits(ITrainable net, ImageSet set, bool flips = false)
    {
        int s = set.Size, per = s * s * 3, k = Model.Classes.Count;
        var result = new float[set.Count][];
        int Batch = _o.BatchSize; // same buffers as training: no second set of large activations
        var tape = new Tape { Training = false };
        int views = flips ? 4 : 1;
        for (int start = 0; start < set.Count; start += Batch)
        {
            int n = Math.Min(Batch, set.Count - start);
            for (int i = 0; i < n; i++) result[start + i] = new float[k];
            for (int v = 0; v < views; v++)
            {
                _evalX.Reshape(n, s, s, 3);
                Par.ForEach(n, i =>
                {
                    var dst = _evalX.Data.AsSpan(i * per, per);
                    ToUnitRange(set.Pixels[start + i], dst);
                    if (v > 0) Augmentation.Apply(dst, s, s, new AugmentationParameters((v & 1) != 0, (v & 2) != 0, 1, 1, 1));
                });
                var z = net.Forward(tape, _evalX);
                for (int i = 0; i < n; i++)
                    for (int j = 0; j < k; j++) result[start + i][j] += z.Data[i * k + j] / views;
            }
        }
        return result;
    }

    public static float[] Softmax(float[] z)
    {
        float max = z.Max();
        var p = new float[z.Length];
        double sum = 0;
        for (int i = 0; i < z.Length; i++) { p[i] = MathF.Exp(z[i] - max); sum += p[i]; }
        for (int i = 0; i < z.Length; i++) p[i] = (float)(p[i] / sum);
        return p;
    }
}
