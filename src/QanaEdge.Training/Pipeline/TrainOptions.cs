using QanaEdge.Model;
using QanaEdge.Training.Network;

namespace QanaEdge.Training.Pipeline;

/// <summary>Everything that determines a training run (with the data and the seed, the run is reproducible).</summary>
public sealed record TrainOptions
{
    public QanaOptions Network { get; init; } = QanaOptions.Full;
    public QuantizationProfile Profile { get; init; } = QuantizationProfile.Paper8;
    public ulong Seed { get; init; } = 1;
    /// <summary>Float epochs (cosine schedule length); early stopping may end sooner.</summary>
    public int Epochs { get; init; } = 60;
    public int BatchSize { get; init; } = 64;
    public float PeakLearningRate { get; init; } = 4e-3f;
    public float WarmupEpochs { get; init; } = 2;
    public float WeightDecay { get; init; } = 5e-3f;
    public float LabelSmoothing { get; init; } = 0.1f;
    /// <summary>Class-balanced sampler exponent: class c drawn ∝ n_c^α (0 = uniform over classes, 1 = natural).</summary>
    public double SamplerAlpha { get; init; } = 0.5;
    /// <summary>
    /// Logit-adjusted loss: τ·log π_c (π = the training split's class frequencies) is added to the logits inside
    /// the loss only, so the raw logits learn p(y|x)/π_y^τ (0 = plain cross-entropy). With the natural sampler
    /// (α = 1), τ = 1 − α aims at the same decision rule as the sampler α, but rare classes win through a larger
    /// margin instead of by replaying their few images several times an epoch.
    /// </summary>
    public double LogitAdjustTau { get; init; }
    /// <summary>
    /// Mixup in the float phase (0 = off): each batch is blended with a seeded permutation of itself,
    /// x = (1 − λ)·x_i + λ·x_π(i) with λ ~ Beta(a, a), and the targets in the same proportion: a regulariser
    /// for a training set whose rarest classes have a few dozen images. Measured at a = 0.2, with and without label smoothing,
    /// and not adopted (firmware-models/qana-paper8-64.report.md).
    /// </summary>
    public double MixupAlpha { get; init; }
    /// <summary>Early stopping patience in epochs (validation macro-F1).</summary>
    public int Patience { get; init; } = 15;
    /// <summary>Quantization-aware fine-tuning epochs after BN folding.</summary>
    public int QatEpochs { get; init; } = 3;
    public float QatLearningRate { get; init; } = 2e-4f;
    /// <summary>
    /// Gray-world colour normalisation (DESIGN.md): per-channel gains fitted on the training split's preprocessed
    /// images only, applied to every split before training and carried in the package (Input.ColorGains), where
    /// the device applies them after resampling. Off: gains of 1.
    /// </summary>
    public bool GrayWorld { get; init; } = true;
    /// <summary>Random 90° rotations (transposes) on top of the flips: dermoscopy has no canonical orientation.</summary>
    public bool Transpose { get; init; } = true;
    /// <summary>
    /// Probability that a training image is a zoomed view: a random square of side
    /// [<see cref="ZoomMinSide"/>, 1] × the centred crop, at a random position, area-resampled to the input size.
    /// Lesions fill the frame to very different degrees, so scale and position are what the network must not
    /// memorise; a set of ~4,800 images gives it every chance to, without this.
    /// </summary>
    public double ZoomProbability { get; init; } = 0.7;
    public double ZoomMinSide { get; init; } = 0.67;
    /// <summary>Side of the cached view that zoomed crops are cut from (1.5 × the input: a crop of side ≥ 0.67
    /// is then never upsampled).</summary>
    public int ZoomSourceSize => ZoomProbability > 0 ? Network.InputSize * 3 / 2 : 0;
    /// <summary>
    /// Decay of the exponential moving average of the weights that validation, early stopping and the package
    /// use (0 = off). Validation macro-F1 of single checkpoints swings by several points from epoch to epoch on
    /// a 700-image validation split whose rarest class has a dozen images; the average is steadier and better.
    /// </summary>
    public float EmaDecay { get; init; } = 0.995f;
    /// <summary>
    /// Clean training batches over which batch norm's statistics are re-estimated for the averaged weights before
    /// every validation of a float network (0 = validate with the statistics training left behind). Those running
    /// statistics follow the live weights on augmented, class-rebalanced batches, not the averaged weights on real
    /// images, and the mismatch moved validation macro-F1 by several points from one epoch to the next, which
    /// early stopping then selected on. The live statistics are put back afterwards: training itself is unchanged.
    /// </summary>
    public int PreciseBnBatches { get; init; } = 24;
    /// <summary>Embedding-space SMOTE for the head after the float phase (ablation row +SMOTE).</summary>
    public bool Smote { get; init; }
    /// <summary>Epochs of head training on real + synthetic embeddings in the SMOTE stage.</summary>
    public int SmoteHeadEpochs { get; init; } = 5;
    public float SmoteHeadLearningRate { get; init; } = 1e-3f;
    /// <summary>Epochs of the brief fine-tune of the last block, transform, SE and head on real images after the SMOTE head.</summary>
    public int SmoteFinetuneEpochs { get; init; } = 1;
    public float SmoteFinetuneLearningRate { get; init; } = 2e-4f;
    /// <summary>Each minority class is brought up to this fraction of the largest class (real + synthetic embeddings).</summary>
    public double SmoteTargetFraction { get; init; } = 0.5;
    /// <summary>
    /// After conversion and calibration, adapt the readout (head + spiking readout) as the device does from
    /// labelled cases: learn from one half of the validation split, keep the update only if it loses no
    /// accuracy on the other half (ablation row +incremental learning).
    /// </summary>
    public bool Incremental { get; init; }
    /// <summary>Passes over the labelled stream in the readout learner.</summary>
    public int IncrementalEpochs { get; init; } = 10;
    public float IncrementalLearningRate { get; init; } = 1e-4f;
}
