using System.CommandLine;
using QanaEdge.Model.Packaging;

namespace QanaEdge.Cli.Commands;

/// <summary><c>qana sign --key KEY PKG [--out FILE]</c>: appends (or replaces) the signature block.</summary>
public sealed class SignCommand : IVerb
{
    public Command Create(CliContext context)
    {
        var key = new Option<string>("--key") { Description = "private key file (PREFIX.key)", Required = true };
        var output = new Option<string?>("--out") { Description = "where to write the signed package (default: sign PKG in place)" };
        var package = new Argument<string>("PKG") { Description = "package to sign (.qana)" };
        var command = new Command("sign", "Sign a model package or readout update.") { key, output, package };
        command.SetAction(parse =>
        {
            string path = parse.GetRequiredValue(package);
            string target = parse.GetValue(output) ?? path;
            Files.RefuseEmpty(target, "--out");
            // Before the key is read: a signed package written over the private key loses the key for good.
            Files.RefuseInputAsOutput(target, "--out", parse.GetRequiredValue(key), "--key", "the signed package would replace the private key");
            using SigningKey signingKey = SigningKey.Load(parse.GetRequiredValue(key));
            byte[] bytes = Files.ReadPackageBytes(path);
            byte[] signed = PackageSigner.Sign(bytes, signingKey);
            Files.WriteAtomically(target, signed);
            context.Out.WriteLine($"signed {target} as {PackageSignature.RoleName(signingKey.Role)} key {signingKey.PublicKey.KeyIdHex}");
            return Cli.Ok;
        });
        return command;
    }
}
