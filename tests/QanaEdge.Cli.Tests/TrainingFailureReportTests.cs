using QanaEdge.Training.Conversion;
using QanaEdge.Training.Pipeline;

namespace QanaEdge.Cli.Tests;

/// <summary>
/// How qana reports a training run that diverged or a trained model that conversion refuses: one line, exit 1, like
/// other command failures, not an internal error. No option makes a real run diverge or a real model saturate in a
/// test's time, so the handler is given the exceptions the training library throws.
/// </summary>
public class TrainingFailureReportTests
{
    [Fact]
    public void A_diverged_run_is_a_one_line_failure_naming_where_it_diverged()
    {
        var error = new StringWriter { NewLine = "\n" };
        int code = Cli.Report(new TrainingDivergedException("float", 3, 17, double.NaN), error);
        new CliResult(code, "", error.ToString()).AssertOneLineError(Cli.Failure,
            "qana: training diverged in the float phase at epoch 3, batch 17 (loss NaN): a smaller --learning-rate, a larger --batch-size");
        Assert.DoesNotContain("internal error", error.ToString());
    }

    /// <summary>The readout learner of <c>--incremental</c> diverging (a pass over the labelled half, not an epoch).</summary>
    [Fact]
    public void A_diverged_readout_learner_is_a_one_line_failure_naming_its_learning_rate()
    {
        var error = new StringWriter { NewLine = "\n" };
        int code = Cli.Report(new TrainingDivergedException(Training.Incremental.ReadoutLearner.Phase, 2, 1, double.PositiveInfinity), error);
        new CliResult(code, "", error.ToString()).AssertOneLineError(Cli.Failure,
            "qana: training diverged in the readout phase at pass 2, batch 1 (loss +Inf): a smaller learning rate may avoid it (qana train --incremental-learning-rate");
    }

    [Fact]
    public void A_refused_conversion_is_a_one_line_failure()
    {
        var error = new StringWriter { NewLine = "\n" };
        int code = Cli.Report(new AggregateException(new ConversionException("layer head, channel 3: bias 2 is 3e+12 steps")), error);
        new CliResult(code, "", error.ToString()).AssertOneLineError(Cli.Failure, "qana: layer head, channel 3: bias 2 is 3e+12 steps");
        Assert.DoesNotContain("internal error", error.ToString());
    }
}
