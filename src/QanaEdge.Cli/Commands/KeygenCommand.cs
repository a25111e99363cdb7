using System.CommandLine;
using QanaEdge.Model;
using QanaEdge.Model.Packaging;

namespace QanaEdge.Cli.Commands;

/// <summary><c>qana keygen --role vendor|learner --out PREFIX</c>: PREFIX.key (mode 0600) and PREFIX.pub.</summary>
public sealed class KeygenCommand : IVerb
{
    public Command Create(CliContext context)
    {
        var role = new Option<string>("--role") { Description = "who the key signs for: vendor (models and readout updates) or learner (readout updates only)", Required = true };
        role.AcceptOnlyFromAmong("vendor", "learner");
        var output = new Option<string>("--out") { Description = "path prefix: writes PREFIX.key and PREFIX.pub", Required = true };
        var command = new Command("keygen", "Create an ECDSA P-256 signing key pair.") { role, output };
        command.SetAction(parse =>
        {
            PackageSignature.TryParseRole(parse.GetRequiredValue(role), out SignerRole r);
            string prefix = parse.GetRequiredValue(output);
            Files.RefuseEmpty(prefix, "--out");
            // "DIR/" is a folder, not a prefix: it wrote the hidden files DIR/.key and DIR/.pub.
            if (Path.EndsInDirectorySeparator(prefix))
                throw new CommandFailedException($"--out '{prefix}' is a folder; it names a path prefix (PREFIX.key, PREFIX.pub)");
            string? folder = Path.GetDirectoryName(Path.GetFullPath(prefix));
            if (folder is not null && ExpectedPath.FolderProblem(folder) is { } problem)
                throw new CommandFailedException($"folder '{folder}' {ExpectedPath.AsClause(problem)}");
            using var key = SigningKey.Generate(r);
            var (priv, pub) = key.Save(prefix);
            context.Out.WriteLine($"{PackageSignature.RoleName(r)} key {key.PublicKey.KeyIdHex}");
            context.Out.WriteLine($"private: {priv} (keep secret; mode 0600)");
            context.Out.WriteLine($"public:  {pub} (copy into the devices' trust folder)");
            return Cli.Ok;
        });
        return command;
    }
}
