using System.CommandLine;
using QanaEdge.Model.Onnx;
using QanaEdge.Model.Packaging;

namespace QanaEdge.Cli.Commands;

/// <summary><c>qana export-onnx PKG OUT</c>: the dequantized float32 equivalent as an ONNX (opset 13) model.</summary>
public sealed class ExportOnnxCommand : IVerb
{
    public Command Create(CliContext context)
    {
        var package = new Argument<string>("PKG") { Description = "package to export (.qana)" };
        var output = new Argument<string>("OUT") { Description = "ONNX file to write (.onnx)" };
        var command = new Command("export-onnx", "Write the float32 equivalent of a package as an ONNX model (input NCHW [1,3,H,W] in [0,1], output logits).") { package, output };
        command.SetAction(parse =>
        {
            string target = parse.GetRequiredValue(output);
            Files.RefuseEmpty(target, "OUT");
            Files.RefuseInputAsOutput(target, "OUT", parse.GetRequiredValue(package), "PKG", "the ONNX model would replace the package");
            ModelPackage p = PackageReader.Load(parse.GetRequiredValue(package));
            byte[] onnx = OnnxExporter.ToBytes(p);
            Files.WriteAtomically(target, onnx);
            TensorSpecText(context, p, target, onnx.Length);
            return Cli.Ok;
        });
        return command;
    }

    private static void TensorSpecText(CliContext context, ModelPackage p, string target, int bytes)
    {
        var input = p.Graph.Tensors[p.Graph.InputTensor];
        var logits = p.Graph.Tensors[p.Graph.LogitsTensor];
        context.Out.WriteLine($"wrote {target} ({bytes} bytes, ONNX opset {OnnxExporter.Opset}): input [1,{input.Channels},{input.Height},{input.Width}] -> logits [1,{logits.Height * logits.Width * logits.Channels}]");
    }
}
