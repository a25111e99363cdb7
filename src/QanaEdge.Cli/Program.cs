using QanaEdge.Cli.Commands;

namespace QanaEdge.Cli;

public static partial class Cli
{
    public static int Main(string[] args) => Run(args, Console.Out, Console.Error);

    // The verbs of qana. To add one, write src/QanaEdge.Cli/Commands/<Verb>Command.cs implementing IVerb
    // and add one line here.
    private static IVerb[] Verbs() =>
    [
        new InspectCommand(),
        new KeygenCommand(),
        new SignCommand(),
        new VerifyCommand(),
        new ExportOnnxCommand(),
        new ClassifyCommand(),
        new BenchCommand(),
        new EvaluateCommand(),
        new SplitCommand(),
        new TrainCommand(),
        new AblateCommand(),
    ];
}
