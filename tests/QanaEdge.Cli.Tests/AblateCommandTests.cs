namespace QanaEdge.Cli.Tests;

/// <summary><c>qana ablate</c> and the new <c>qana train</c> switches refuse bad calls with one line (the runs themselves are tested in the Training tests).</summary>
public class AblateCommandTests
{
    [Fact]
    public void AblateNeedsItsDataAndAPositiveSchedule()
    {
        Qana.Run("ablate", "--labels", "x.csv").AssertOneLineError(2, "--data");
        var dir = Directory.CreateTempSubdirectory("qana-ablate-");
        try
        {
            Qana.Run("ablate", "--data", dir.FullName, "--labels", "x.csv", "--epochs", "0").AssertOneLineError(2, "--epochs");
            Qana.Run("ablate", "--data", dir.FullName, "--labels", Path.Combine(dir.FullName, "missing.csv")).AssertOneLineError(1, "not found");
        }
        finally { dir.Delete(recursive: true); }
    }

    [Fact]
    public void TrainAcceptsTheSmoteAndIncrementalSwitches()
    {
        // Parsed as switches (not unknown options): the call then fails only for the missing labels file.
        var dir = Directory.CreateTempSubdirectory("qana-train-");
        try
        {
            Qana.Run("train", "--data", dir.FullName, "--labels", Path.Combine(dir.FullName, "missing.csv"), "--out", Path.Combine(dir.FullName, "m.qana"),
                "--smote", "--incremental").AssertOneLineError(1, "labels file");
        }
        finally { dir.Delete(recursive: true); }
    }

    [Theory]
    [InlineData("--zoom-probability", "1.5")]
    [InlineData("--dropout", "0.6")]
    [InlineData("--sampler-alpha", "-0.1")]
    [InlineData("--label-smoothing", "0.5")]
    [InlineData("--incremental-learning-rate", "0")]
    [InlineData("--incremental-epochs", "0")]
    [InlineData("--patience", "0")]
    [InlineData("--patience", "-3")]
    public void TrainRefusesARecipeValueOutOfRange(string option, string value) =>
        Qana.Run("train", "--data", "d", "--labels", "l.csv", "--out", "m.qana", option, value).AssertOneLineError(2, option);
}

/// <summary><c>qana train --throughput-steps</c>: one JSON line with what was measured and at which vector width.</summary>
public class TrainThroughputTests
{
    [Fact]
    public void Throughput_mode_reports_its_measurement_and_the_kernels_vector_width()
    {
        CliResult r = Qana.Run("train", "--throughput-steps", "2", "--batch-size", "4");
        Assert.True(r.Code == 0, r.Err);
        using var json = System.Text.Json.JsonDocument.Parse(r.Out.Trim().Split('\n')[^1]);
        var o = json.RootElement;
        Assert.Equal(4, o.GetProperty("batch").GetInt32());
        Assert.Equal(2, o.GetProperty("steps").GetInt32());
        Assert.True(o.GetProperty("threads").GetInt32() >= 1);
        double seconds = o.GetProperty("seconds").GetDouble();
        Assert.True(seconds > 0);
        Assert.Equal(8 / seconds, o.GetProperty("images_per_s").GetDouble(), 0.1 + 0.01 * 8 / seconds);
        // The command runs in this process, so its kernels' Vector<float> is this one.
        Assert.Equal(System.Numerics.Vector<float>.Count, o.GetProperty("vector_lanes").GetInt32());
    }
}
