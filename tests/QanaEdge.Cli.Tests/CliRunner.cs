namespace QanaEdge.Cli.Tests;

/// <summary>Runs <c>qana</c> in-process and captures what it printed.</summary>
public sealed record CliResult(int Code, string Out, string Err)
{
    public string[] ErrLines => Err.Split('\n', StringSplitOptions.RemoveEmptyEntries);

    /// <summary>A failure as the contract wants it: exactly one line on stderr, no stack trace.</summary>
    public void AssertOneLineError(int code, string expected)
    {
        Assert.True(Code == code, $"exit {Code}, expected {code}; stderr: {Err}; stdout: {Out}");
        Assert.Single(ErrLines);
        Assert.Contains(expected, Err, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("   at ", Err);
        Assert.DoesNotContain("Exception", Err);
    }
}

public static class Qana
{
    public static CliResult Run(params string[] args)
    {
        var output = new StringWriter { NewLine = "\n" };
        var error = new StringWriter { NewLine = "\n" };
        int code = QanaEdge.Cli.Cli.Run(args, output, error);
        return new CliResult(code, output.ToString(), error.ToString());
    }
}
