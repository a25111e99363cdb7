using QanaEdge.Training.Incremental;

namespace QanaEdge.Training.Pipeline;

/// <summary>
/// The training loss became NaN or infinite, or a step left the weights or the validation outputs so: the weights
/// cannot recover, and the run would otherwise fail at validation with an internal error about a NaN score (or, in the
/// readout learner, quantize NaN weights into an update). The message names the phase, epoch (the readout learner's
/// pass) and batch and the options that may avoid it: the phase's learning rate where an option sets it, and what
/// changes what a phase runs.
/// </summary>
public sealed class TrainingDivergedException : Exception
{
    public TrainingDivergedException(string phase, int epoch, int batch, double loss)
        : this(phase, epoch, batch, $"loss {Describe(loss)}") { }

    private TrainingDivergedException(string phase, int epoch, int batch, string what, Exception? inner = null)
        : base($"training diverged in the {phase} phase at {Unit(phase)} {epoch}, batch {batch} ({what}): " + Hint(phase), inner)
    {
        Phase = phase;
        Epoch = epoch;
        Batch = batch;
    }

    /// <summary>
    /// The step taken on that batch left weights NaN or infinite although the batch's loss was finite: the readout
    /// learner's loss reads the logits through the int8 clamp, so overflowed weights can saturate every output and
    /// still give a finite loss.
    /// </summary>
    public static TrainingDivergedException WeightsNotFinite(string phase, int epoch, int batch) =>
        new(phase, epoch, batch, "weights no longer finite");

    /// <summary>
    /// The validation after the epoch's last step gave outputs that are NaN or infinite although every training loss
    /// was finite: the weights grew enough for the forward pass to overflow.
    /// </summary>
    public static TrainingDivergedException ValidationNotFinite(string phase, int epoch, int lastBatch) =>
        new(phase, epoch, lastBatch, "the validation outputs after it are not finite");

    /// <summary>
    /// The fake-quantized network refused the weights the steps up to that batch left (or the epoch's last step, when
    /// found at validation): a layer's requantization multiplier, computed from its weight scale, no longer fits the
    /// integer graph.
    /// </summary>
    public static TrainingDivergedException OutOfIntegerRange(string phase, int epoch, int batch, Exception refusal) =>
        new(phase, epoch, batch, $"the weights left the integer graph's range: {refusal.Message}", refusal);

    public string Phase { get; }
    /// <summary>The epoch, or for the readout learner the pass over its cases, counted from 1.</summary>
    public int Epoch { get; }
    public int Batch { get; }

    private static string Describe(double loss) => double.IsNaN(loss) ? "NaN" : loss > 0 ? "+Inf" : "-Inf";

    /// <summary>The readout learner calls its epochs passes (over a few labelled cases, not a training split).</summary>
    private static string Unit(string phase) => phase == ReadoutLearner.Phase ? "pass" : "epoch";

    /// <summary>The float checkpoint a run writes beside its package (<see cref="PipelinePaths.FloatCheckpoint"/>).</summary>
    private const string Checkpoint = "OUT.float.ckpt (the float checkpoint this run wrote beside its --out OUT.qana)";

    private static string Hint(string phase) => phase switch
    {
        "qat" => $"a smaller --qat-learning-rate may avoid it, or --resume-float {Checkpoint} with --qat-epochs 0 converts the float weights without this phase",
        "smote-head" or "smote-finetune" => $"--resume-float {Checkpoint} without --smote runs the rest without this phase",
        // The learner serves qana train --incremental and the daemon, and does not know which one runs it: both settings.
        ReadoutLearner.Phase => "a smaller learning rate may avoid it (qana train --incremental-learning-rate; on the device Qana:Learning:LearningRate)",
        // Below 20 epochs the warm-up is a tenth of them, so the peak rate comes sooner.
        _ => "a smaller --learning-rate, a larger --batch-size, another --seed, or --epochs of 20 or more (fewer shorten the warm-up) may avoid it",
    };
}
