using System.CommandLine;
using System.Security.Cryptography;
using QanaEdge.Model.Packaging;

namespace QanaEdge.Cli;

/// <summary>One verb of <c>qana</c>: builds its System.CommandLine command, whose action returns the exit code.</summary>
public interface IVerb
{
    Command Create(CliContext context);
}

/// <summary>Where a verb writes: standard output for results, standard error for the one failure line.</summary>
public sealed class CliContext(TextWriter output, TextWriter error)
{
    public TextWriter Out { get; } = output;
    public TextWriter Err { get; } = error;
}

/// <summary>The verb was called wrongly in a way the parser cannot see (exit 2).</summary>
public sealed class UsageException(string message) : Exception(message);

/// <summary>The verb ran and failed for a reason the user should read (exit 1, one line).</summary>
public sealed class CommandFailedException(string message) : Exception(message);

/// <summary>
/// The <c>qana</c> entry point. Exit codes: 0 success, 2 bad usage (unknown verb or option, missing
/// argument), 1 failure with exactly one line on standard error and never a stack trace.
/// </summary>
public static partial class Cli
{
    public const int Ok = 0;
    public const int Failure = 1;
    public const int BadUsage = 2;

    public static int Run(string[] args, TextWriter output, TextWriter error)
    {
        var context = new CliContext(output, error);
        var root = new RootCommand("qana: build, inspect, sign and run QanaEdge skin-lesion model packages.");
        foreach (IVerb verb in Verbs()) root.Subcommands.Add(verb.Create(context));

        ParseResult parsed = root.Parse(args);
        if (parsed.Errors.Count > 0)
        {
            // One line: the first error is the useful one; the rest are usually consequences of it.
            error.WriteLine($"qana: {OneLine(parsed.Errors[0].Message)} (see 'qana --help')");
            return BadUsage;
        }
        try
        {
            return parsed.Invoke(new InvocationConfiguration { Output = output, Error = error, EnableDefaultExceptionHandler = false });
        }
        catch (Exception e)
        {
            return Report(e, error);
        }
    }

    /// <summary>The top-level handler: our exception types become one line; anything else is an internal
    /// error, still one line and without a stack trace.</summary>
    internal static int Report(Exception e, TextWriter error)
    {
        if (e is AggregateException { InnerExceptions.Count: 1 } aggregate) e = aggregate.InnerExceptions[0];
        if (e is UsageException)
        {
            error.WriteLine($"qana: {OneLine(e.Message)} (see 'qana --help')");
            return BadUsage;
        }
        string message = e switch
        {
            CommandFailedException or PackageFormatException or KeyFileException or SignatureRefusedException => e.Message,
            FileNotFoundException f => f.FileName is null || e.Message.Contains(f.FileName, StringComparison.Ordinal) ? e.Message : $"{e.Message} ({f.FileName})",
            IOException or UnauthorizedAccessException or InvalidDataException or CryptographicException => e.Message,
            OperationCanceledException => "cancelled",
            _ => $"internal error ({e.GetType().Name}): {e.Message}",
        };
        error.WriteLine($"qana: {OneLine(message)}");
        return Failure;
    }

    internal static string OneLine(string message) => message.ReplaceLineEndings(" ").Trim();
}
