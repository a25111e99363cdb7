namespace QanaEdge.Training.Pipeline;

/// <summary>
/// The training loss became NaN or infinite: the weights cannot recover, and the run would otherwise go on to validate
/// and fail there with an internal error about a NaN score. The message names the phase, epoch and batch and the
/// options that change what a phase runs (no option sets the learning rates: they are the recipe's).
/// </summary>
public sealed class TrainingDivergedException(string phase, int epoch, int batch, double loss)
    : Exception($"training diverged in the {phase} phase at epoch {epoch}, batch {batch} (loss {Describe(loss)}): " + Hint(phase))
{
    public string Phase { get; } = phase;
    public int Epoch { get; } = epoch;
    public int Batch { get; } = batch;

    private static string Describe(double loss) => double.IsNaN(loss) ? "NaN" : loss > 0 ? "+Inf" : "-Inf";

    /// <summary>The float checkpoint a run writes beside its package (<see cref="PipelinePaths.FloatCheckpoint"/>).</summary>
    private const string Checkpoint = "OUT.float.ckpt (the float checkpoint this run wrote beside its --out OUT.qana)";

    private static string Hint(string phase) => phase switch
    {
        "qat" => $"--resume-float {Checkpoint} with --qat-epochs 0 converts the float weights without this phase",
        "smote-head" or "smote-finetune" => $"--resume-float {Checkpoint} without --smote runs the rest without this phase",
        // Below 20 epochs the warm-up is a tenth of them, so the peak rate comes sooner.
        _ => "a larger --batch-size, another --seed, or --epochs of 20 or more (fewer shorten the warm-up) may avoid it",
    };
}
