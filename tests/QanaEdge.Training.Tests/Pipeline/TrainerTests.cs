using QanaEdge.Imaging;
using QanaEdge.Model;
using QanaEdge.Training.Data;
using QanaEdge.Training.Engine;
using QanaEdge.Training.Network;
using QanaEdge.Training.Pipeline;
using QanaEdge.Training.Tests.Data;

namespace QanaEdge.Training.Tests.Pipeline;

/// <summary>The zoom augmentation and the weight average of the training loop.</summary>
public class TrainerTests
{
    private const int Size = 16, ZoomSize = 24;

    [Fact]
    public void WeightAverageFollowsItsRecurrenceAndSwapsBack()
    {
        var p = new Parameter("w", 3);
        float[] start = [1, -2, 4];
        start.CopyTo(p.Value, 0);
        var average = new WeightAverage([p], 0.5f);
        double[] expected = [1, -2, 4];
        for (int t = 1; t <= 6; t++)
        {
            for (int j = 0; j < 3; j++) p.Value[j] += t;              // the "optimiser" moves the weights
            average.Update();
            double d = Math.Min(0.5, (1.0 + t) / (10.0 + t));
            for (int j = 0; j < 3; j++) expected[j] = d * expected[j] + (1 - d) * p.Value[j];
        }
        float[] live = (float[])p.Value.Clone();
        average.Swap();
        for (int j = 0; j < 3; j++) Assert.Equal(expected[j], p.Value[j], 4);
        average.Swap();
        Assert.Equal(live, p.Value);
    }

    [Fact]
    public void WeightAverageRejectsADecayOutsideTheOpenUnitInterval()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new WeightAverage([new Parameter("w", 1)], 1f));
        Assert.Throws<ArgumentOutOfRangeException>(() => new WeightAverage([new Parameter("w", 1)], 0f));
    }

    /// <summary>Random images with a zoom view: a seed fixes the run; the zoom and the average change it.</summary>
    [Fact]
    public void ZoomedTrainingIsDeterministicForASeedAndTheZoomIsUsed()
    {
        var set = Synthetic(42, 7);
        var zoomed = Fit(set, new TrainOptions { ZoomProbability = 1 });
        Assert.Equal(zoomed, Fit(set, new TrainOptions { ZoomProbability = 1 }));
        Assert.NotEqual(zoomed, Fit(set, new TrainOptions { ZoomProbability = 0 }));
        Assert.NotEqual(zoomed, Fit(set, new TrainOptions { ZoomProbability = 1, EmaDecay = 0 }));
    }

    /// <summary>Mixup and the logit-adjusted loss are seeded like the rest of the run, and each changes it.</summary>
    [Fact]
    public void MixupAndLogitAdjustmentAreDeterministicAndChangeTheRun()
    {
        var set = Synthetic(42, 8);
        var plain = Fit(set, new TrainOptions());
        var mixed = Fit(set, new TrainOptions { MixupAlpha = 0.4 });
        Assert.Equal(mixed, Fit(set, new TrainOptions { MixupAlpha = 0.4 }));
        Assert.NotEqual(plain, mixed);
        // Offsets only matter when the classes are imbalanced (equal priors shift every logit alike).
        var skewed = Synthetic(42, 8, i => i < 30 ? 5 : i % Classes.Count);
        var adjusted = Fit(skewed, new TrainOptions { LogitAdjustTau = 1, SamplerAlpha = 1 });
        Assert.Equal(adjusted, Fit(skewed, new TrainOptions { LogitAdjustTau = 1, SamplerAlpha = 1 }));
        Assert.NotEqual(Fit(skewed, new TrainOptions { SamplerAlpha = 1 }), adjusted);
    }

    [Fact]
    public void LogitOffsetsAreTauTimesTheLogPriorOfTheTrainingLabels()
    {
        int[] labels = [0, 0, 0, 1, 2, 2];
        Assert.Null(Trainer.LogitOffsets(labels, 3, 0));
        var b = Trainer.LogitOffsets(labels, 3, 0.5)!;
        Assert.Equal(0.5 * Math.Log(3 / 6.0), b[0], 6);
        Assert.Equal(0.5 * Math.Log(1 / 6.0), b[1], 6);
        Assert.Equal(0.5 * Math.Log(2 / 6.0), b[2], 6);
    }

    /// <summary>
    /// An absurd learning rate makes the loss NaN or infinite within the first epoch: the run stops at that batch with a
    /// message naming it, before the validation whose NaN scores used to end it with an internal error.
    /// </summary>
    [Fact]
    public void A_diverging_run_stops_at_the_batch_whose_loss_is_not_finite()
    {
        var set = Synthetic(28, 6);
        var o = new TrainOptions { Network = new QanaOptions { InputSize = Size, StemChannels = 8, Blocks = [(16, 1)] }, BatchSize = 7 };
        var net = new QanaNet(o.Network, 4);
        var trainer = new Trainer(o);
        var e = Assert.Throws<TrainingDivergedException>(() =>
            trainer.Fit("float", net, set, set, 2, 1e30f, () => NetState.Capture(net), s => ((NetState)s).Restore(net), 5, 0));
        Assert.Equal(("float", 1), (e.Phase, e.Epoch));
        Assert.InRange(e.Batch, 2, 4); // the first step is taken from finite weights
        Assert.Matches(@"^training diverged in the float phase at epoch 1, batch \d \(loss (NaN|[+-]Inf)\): a smaller --learning-rate, a larger --batch-size", e.Message);
        Assert.Empty(trainer.History);
    }

    /// <summary>
    /// Every epoch gets a summary of its own on the progress callback, apart from the batch lines (which a terminal
    /// redraws over and a file or pipe drops): only the batch lines used to be sent, so a run whose standard error went to
    /// a file printed nothing between its phases, however many epochs it ran.
    /// </summary>
    [Fact]
    public void Each_epoch_is_reported_on_a_line_of_its_own_with_its_validation_scores()
    {
        var set = Synthetic(28, 5);
        var o = new TrainOptions { Network = new QanaOptions { InputSize = Size, StemChannels = 8, Blocks = [(16, 1)] }, BatchSize = 14 };
        var net = new QanaNet(o.Network, 4);
        var messages = new List<string>();
        var trainer = new Trainer(o, messages.Add);
        trainer.Fit("float", net, set, set, 3, 3e-3f, () => NetState.Capture(net), s => ((NetState)s).Restore(net), 5, 0);

        var epochLines = messages.Where(m => !m.Contains(" batch ", StringComparison.Ordinal)).ToArray();
        Assert.Equal(3, epochLines.Length);
        for (int e = 0; e < 3; e++)
        {
            var r = trainer.History[e];
            Assert.StartsWith($"float epoch {e + 1}/3: loss {r.TrainLoss.ToString("F4", System.Globalization.CultureInfo.InvariantCulture)}, validation top-1 ", epochLines[e]);
            Assert.Contains($"macro-F1 {r.ValMacroF1.ToString("F3", System.Globalization.CultureInfo.InvariantCulture)}", epochLines[e]);
            Assert.Equal(r.Best, epochLines[e].Contains("(best so far)", StringComparison.Ordinal));
        }
        Assert.Contains("(best so far)", epochLines[0]);
    }

    /// <summary>An epoch that ends the phase early says so.</summary>
    [Fact]
    public void An_epoch_line_names_an_early_stop()
    {
        var record = new EpochRecord("qat", 4, 0.5, 1e-4, 0.5, 0.25, 0.5, 3, 10, false);
        Assert.Equal("qat epoch 4/10: loss 0.5000, validation top-1 50.0%, macro-F1 0.250, balanced accuracy 50.0%, 3 s; stopping early: no better validation macro-F1 in 2 epochs",
            Trainer.EpochLine(record, 10, 2));
        Assert.DoesNotContain(" batch ", Trainer.EpochLine(record, 10, 0));
    }

    /// <summary>A phase that cannot beat the starting weights' validation score leaves them in place.</summary>
    [Fact]
    public void StartingWeightsWinWhenNoEpochBeatsTheirScore()
    {
        var set = Synthetic(28, 5);
        var o = new TrainOptions { Network = new QanaOptions { InputSize = Size, StemChannels = 8, Blocks = [(16, 1)] }, BatchSize = 14 };
        var net = new QanaNet(o.Network, 4);
        var before = net.Parameters.SelectMany(p => p.Value).ToArray();
        double best = new Trainer(o).Fit("qat", net, set, set, 2, 3e-3f, () => NetState.Capture(net), s => ((NetState)s).Restore(net), 5, 0,
            startScore: 1.0);
        Assert.Equal(1.0, best);
        Assert.Equal(before, net.Parameters.SelectMany(p => p.Value).ToArray());
    }

    /// <summary>
    /// Validation with batch-norm statistics re-estimated for the averaged weights changes what is measured and
    /// kept, never the training itself: the same losses epoch by epoch, and the kept state's statistics are those
    /// of its own weights (re-estimating them again changes nothing).
    /// </summary>
    [Fact]
    public void PreciseBatchNormAtValidationLeavesTrainingAloneAndKeepsConsistentStatistics()
    {
        var set = Synthetic(42, 9);
        var options = new TrainOptions
        {
            Network = new QanaOptions { InputSize = Size, StemChannels = 8, Blocks = [(16, 1), (16, 2)], DropoutRate = 0.2f },
            BatchSize = 14, Seed = 5, ZoomProbability = 0.5,
        };
        (List<EpochRecord> History, QanaNet Net, Trainer Trainer) Run(int preciseBatches)
        {
            var o = options with { PreciseBnBatches = preciseBatches };
            var net = new QanaNet(o.Network, o.Seed);
            var trainer = new Trainer(o);
            trainer.Fit("float", net, set, set, 3, 3e-3f, () => NetState.Capture(net), s => ((NetState)s).Restore(net), 5, 0);
            return (trainer.History, net, trainer);
        }
        var plain = Run(0);
        var precise = Run(2);
        Assert.Equal(plain.History.Select(r => r.TrainLoss), precise.History.Select(r => r.TrainLoss));

        var kept = BatchNormStatistics(precise.Net);
        precise.Trainer.RecalibrateBatchNorm(precise.Net, set, 2);
        Assert.Equal(kept, BatchNormStatistics(precise.Net));
        // The plain run kept the statistics training left behind, which are not those.
        var plainKept = BatchNormStatistics(plain.Net);
        plain.Trainer.RecalibrateBatchNorm(plain.Net, set, 2);
        Assert.NotEqual(plainKept, BatchNormStatistics(plain.Net));
    }

    /// <summary>Re-estimated statistics are those of the network as it runs at inference: dropout off, and back on after.</summary>
    [Fact]
    public void BatchNormRecalibrationRunsWithoutDropout()
    {
        var set = Synthetic(28, 4);
        float[] Stats(float dropout)
        {
            var o = new TrainOptions { Network = new QanaOptions { InputSize = Size, StemChannels = 8, Blocks = [(16, 1), (16, 2)], DropoutRate = dropout }, BatchSize = 14 };
            var net = new QanaNet(o.Network, 2);
            new Trainer(o).RecalibrateBatchNorm(net, set, 2);
            Assert.All(net.Blocks, b => Assert.Equal(dropout, b.Drop.Rate));
            return BatchNormStatistics(net);
        }
        Assert.Equal(Stats(0f), Stats(0.5f));
    }

    /// <summary>Every batch norm's running mean and variance, in layer order.</summary>
    private static float[] BatchNormStatistics(QanaNet net) => net.BatchNorms.SelectMany(b => b.RunningMean.Concat(b.RunningVar)).ToArray();

    private static float[] Fit(ImageSet set, TrainOptions baseOptions)
    {
        var o = baseOptions with
        {
            Network = new QanaOptions { InputSize = Size, StemChannels = 8, Blocks = [(16, 1), (16, 2)], DropoutRate = 0 },
            BatchSize = 14, Seed = 11,
        };
        var net = new QanaNet(o.Network, o.Seed);
        new Trainer(o).Fit("float", net, set, set, 2, 3e-3f, () => NetState.Capture(net), s => ((NetState)s).Restore(net), 5, 0,
            mixupAlpha: o.MixupAlpha);
        return net.Parameters.SelectMany(p => p.Value).ToArray();
    }

    private static ImageSet Synthetic(int count, ulong seed, Func<int, int>? label = null)
    {
        var rng = new Rng(seed);
        byte[][] pixels = new byte[count][], zoom = new byte[count][];
        var labels = new int[count];
        for (int i = 0; i < count; i++)
        {
            zoom[i] = new byte[ZoomSize * ZoomSize * 3];
            for (int j = 0; j < zoom[i].Length; j++) zoom[i][j] = (byte)rng.Next(256);
            pixels[i] = new byte[Size * Size * 3];
            Resampler.AreaResize(zoom[i], ZoomSize, new CropBox(0, 0, ZoomSize), Size, pixels[i]);
            labels[i] = label?.Invoke(i) ?? i % Classes.Count;
        }
        return new ImageSet(Size, pixels, labels, labels.Select(l => $"img{l}").ToArray(), zoom, ZoomSize);
    }

    /// <summary>With every image used once in equal batches, the re-estimated running mean of the stem's batch
    /// norm is exactly the mean of the stem convolution's output over the set.</summary>
    [Fact]
    public void BatchNormRecalibrationAveragesTheBatchStatistics()
    {
        var set = Synthetic(28, 3);
        var o = new TrainOptions { Network = new QanaOptions { InputSize = Size, StemChannels = 8, Blocks = [(16, 1)] }, BatchSize = 14 };
        var net = new QanaNet(o.Network, 2);
        // Capped at the 2 batches the set holds, and the count says so (the pipeline prints it).
        Assert.Equal(2, new Trainer(o).RecalibrateBatchNorm(net, set, 5));

        var x = new Tensor(set.Count, Size, Size, 3) { RequiresGrad = false };
        for (int i = 0; i < set.Count; i++)
            for (int j = 0; j < Size * Size * 3; j++) x.Data[i * Size * Size * 3 + j] = set.Pixels[i][j] / 255f;
        var stem = net.Stem.Forward(new Tape { Training = false }, x);
        for (int c = 0; c < 8; c++)
        {
            double mean = 0;
            for (int r = 0; r < stem.Length / 8; r++) mean += stem.Data[r * 8 + c];
            mean /= stem.Length / 8;
            Assert.Equal(mean, net.StemBn.RunningMean[c], 4);
        }
        Assert.All(net.BatchNorms, bn => Assert.Equal(0.1f, bn.Momentum));
    }

    /// <summary>The zoom view of a real image is the same centred crop as the input, only larger: resampled
    /// down it gives back the input up to the rounding of the two-step resampling.</summary>
    [Fact]
    public void ZoomViewOfARealImageIsTheInputCropAtALargerSide()
    {
        var rows = Ham10000Index.Load(Ham10000Location.Images, Ham10000Location.Labels).Take(3).ToList();
        var set = ImageSet.Load(rows, 32, 48);
        Assert.Equal(48, set.ZoomSize);
        var back = new byte[32 * 32 * 3];
        for (int i = 0; i < rows.Count; i++)
        {
            Resampler.AreaResize(set.ZoomPixels![i], 48, new CropBox(0, 0, 48), 32, back);
            double meanAbs = back.Zip(set.Pixels[i], (a, b) => Math.Abs(a - b)).Average();
            Assert.True(meanAbs < 2.0, $"{rows[i].ImageId}: mean absolute difference {meanAbs:F2} levels");
        }
        Assert.Null(ImageSet.Load(rows, 32).ZoomPixels);
    }

    [Fact]
    public void ImageSetRefusesAZoomViewThatDoesNotFit()
    {
        var one = new[] { new byte[Size * Size * 3] };
        Assert.Throws<ArgumentException>(() => new ImageSet(Size, one, [0], ["a"], [new byte[12]], Size - 8));
        Assert.Throws<ArgumentException>(() => new ImageSet(Size, one, [0], ["a"], [], ZoomSize));
    }
}
