using QanaEdge.Runtime;
using QanaEdge.TestSupport;

namespace QanaEdge.Runtime.Tests;

public class TimeSteppedTests
{
    [Fact]
    public void Spike_counts_approach_the_integer_activations_as_T_grows()
    {
        var pkg = TestGraphs.QanaShaped(3, 8);
        var input = TestGraphs.RandomInput(pkg, 4);
        var errors = new List<double>();
        foreach (int t in new[] { 8, 32, 128, 512 })
        {
            using var engine = IntegerEngine.Create(pkg, KernelMode.TimeStepped, new EngineOptions { TimeSteps = t });
            engine.Run(input);
            var report = engine.TimeSteppedReport!;
            Assert.Equal(t, report.TimeSteps);
            errors.Add(report.SpikingMeanAbsError);
        }
        Assert.True(errors[^1] < errors[0] / 4, string.Join(", ", errors));
        Assert.True(errors[^1] < 1.0, string.Join(", ", errors));
    }
}
