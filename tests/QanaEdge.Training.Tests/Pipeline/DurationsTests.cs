using QanaEdge.Training.Pipeline;

namespace QanaEdge.Training.Tests.Pipeline;

/// <summary>
/// The training log, its report and its ETA count the hours whole: the hh:mm:ss TimeSpan format they used wraps at a
/// day, so a 25-hour run on a slow board read "01:00:00".
/// </summary>
public class DurationsTests
{
    [Fact]
    public void Hours_past_a_day_are_counted_whole()
    {
        Assert.Equal("00:05:07", Durations.Clock(new TimeSpan(0, 5, 7)));
        Assert.Equal("25:30:00", Durations.Clock(TimeSpan.FromHours(25.5)));
        Assert.Equal("100:00:59", Durations.Clock(new TimeSpan(4, 4, 0, 59)));
    }

    [Fact]
    public void The_training_report_says_how_long_a_run_past_a_day_took()
    {
        Assert.EndsWith("Training took 25:30:00.", TrainingPipeline.Provenance(TimeSpan.FromHours(25.5)));
        Assert.EndsWith("Training took 00:42:25.", TrainingPipeline.Provenance(new TimeSpan(0, 42, 25)));
    }
}
