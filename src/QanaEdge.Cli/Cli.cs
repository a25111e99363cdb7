using System.CommandLine;
using System.Security.Cryptography;
using QanaEdge.Model.Packaging;
using QanaEdge.Runtime.Kernels;
using QanaEdge.Training.Conversion;
using QanaEdge.Training.Data;
using QanaEdge.Training.Pipeline;

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
        // The parser takes an unknown "--flag" as a positional value; our verbs have no argument that
        // starts with '-', so such a token is a mistyped option (unless it follows "--").
        string? unknownOption = parsed.Tokens
            .TakeWhile(t => t.Type != System.CommandLine.Parsing.TokenType.DoubleDash)
            .FirstOrDefault(t => t.Type == System.CommandLine.Parsing.TokenType.Argument && t.Value.Length > 1 && t.Value[0] == '-' && !char.IsDigit(t.Value[1]))?.Value;
        if (unknownOption is not null)
        {
            error.WriteLine($"qana: Unrecognized option '{unknownOption}'. {Usage(parsed.CommandResult.Command)}");
            return BadUsage;
        }
        if (parsed.Errors.Count > 0)
        {
            // One line. An unrecognised token explains the other errors (a mistyped verb also leaves the
            // verb "missing"), so it goes first; then the usage of the command that was reached.
            var messages = parsed.Errors.Select(e => OneLine(e.Message))
                .OrderBy(m => m.StartsWith("Unrecognized", StringComparison.Ordinal) ? 0 : 1).Distinct();
            error.WriteLine($"qana: {string.Join(" ", messages)} {Usage(parsed.CommandResult.Command)}");
            return BadUsage;
        }
        // A mistyped kernel cap is refused here, before any verb runs, rather than surfacing at the first kernel use.
        if (InstructionSets.CapError is { } capError)
        {
            error.WriteLine($"qana: {capError}");
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
    /// error, still one line and without a stack trace. An exception that a parallel loop wrapped alone in an
    /// AggregateException is reported as itself; a data set that cannot be used, a training run that diverged or a trained model that conversion
    /// refuses is a failure (exit 1) like a bad file.</summary>
    internal static int Report(Exception e, TextWriter error)
    {
        if (e is AggregateException aggregate && aggregate.Flatten().InnerExceptions is { Count: 1 } inner) e = inner[0];
        if (e is UsageException)
        {
            error.WriteLine($"qana: {OneLine(e.Message)} (see 'qana --help')");
            return BadUsage;
        }
        string message = e switch
        {
            CommandFailedException or PackageFormatException or KeyFileException or SignatureRefusedException or DatasetException
                or ConversionException or TrainingDivergedException => e.Message,
            FileNotFoundException f => f.FileName is null || e.Message.Contains(f.FileName, StringComparison.Ordinal) ? e.Message : $"{e.Message} ({f.FileName})",
            IOException or UnauthorizedAccessException or InvalidDataException or CryptographicException => e.Message,
            OperationCanceledException => "cancelled",
            _ => $"internal error ({e.GetType().Name}): {e.Message}",
        };
        error.WriteLine($"qana: {OneLine(message)}");
        return Failure;
    }

    /// <summary>"(usage: qana VERB --required X [options] ARG...)" for a verb, the help hint for the root.</summary>
    private static string Usage(Command command)
    {
        if (command is RootCommand) return "(see 'qana --help')";
        var parts = new List<string> { "qana", command.Name };
        foreach (Option o in command.Options.Where(o => o.Required)) parts.Add($"{o.Name} {o.Name.TrimStart('-').ToUpperInvariant()}");
        if (command.Options.Any(o => !o.Required && o is not System.CommandLine.Help.HelpOption && !o.Recursive)) parts.Add("[options]");
        foreach (Argument a in command.Arguments) parts.Add(a.Name);
        return $"(usage: {string.Join(' ', parts)})";
    }

    internal static string OneLine(string message) => message.ReplaceLineEndings(" ").Trim();
}
