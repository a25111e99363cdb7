using System.CommandLine;
using QanaEdge.Model;
using QanaEdge.Model.Packaging;

namespace QanaEdge.Cli.Commands;

/// <summary><c>qana verify --trust DIR PKG</c>: exit 0 when a trusted key may have signed it, else 1 with the reason.</summary>
public sealed class VerifyCommand : IVerb
{
    public Command Create(CliContext context)
    {
        var trust = new Option<string>("--trust") { Description = "folder of trusted public keys (*.pub)", Required = true };
        var package = new Argument<string>("PKG") { Description = "package to verify (.qana)" };
        var command = new Command("verify", "Check a package's signature against trusted keys and the signer's role.") { trust, package };
        command.SetAction(parse =>
        {
            TrustStore store = TrustStore.Load(parse.GetRequiredValue(trust));
            string path = parse.GetRequiredValue(package);
            // A missing file (or a folder) is not a corrupt package: it is reported as the other verbs report a missing input.
            if (ExpectedPath.FileProblem(path) is { } problem) throw new CommandFailedException($"'{path}' {problem}");
            VerificationResult result = PackageVerifier.Verify(path, store);
            if (!result.IsValid) throw new CommandFailedException($"refused: {result.Reason}");
            context.Out.WriteLine(result.Reason);
            return Cli.Ok;
        });
        return command;
    }
}
