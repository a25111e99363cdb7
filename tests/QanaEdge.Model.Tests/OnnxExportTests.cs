using System.Diagnostics;
using System.Globalization;
using QanaEdge.Model.Onnx;
using QanaEdge.Model.Packaging;

namespace QanaEdge.Model.Tests;

/// <summary>
/// The ONNX export is checked by the onnx package itself (checker with full shape inference) and run by
/// a small torch-based evaluator of the ops we emit; its logits must match the dequantized reference.
/// Needs /usr/bin/python3 with onnx and torch; skipped with the reason otherwise.
/// </summary>
public sealed class OnnxExportTests : IDisposable
{
    private const string Python = "/usr/bin/python3";
    private readonly string _dir = Directory.CreateTempSubdirectory("qana-onnx").FullName;

    public void Dispose() => Directory.Delete(_dir, true);

    private const string Script = """
        import sys, numpy as np, onnx, torch, torch.nn.functional as F
        from onnx import numpy_helper, helper
        m = onnx.load(sys.argv[1])
        onnx.checker.check_model(m, full_check=True)
        shape = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
        out_shape = [d.dim_value for d in m.graph.output[0].type.tensor_type.shape.dim]
        env = {i.name: torch.tensor(numpy_helper.to_array(i).copy()) for i in m.graph.initializer}
        env['input'] = torch.tensor(np.fromfile(sys.argv[2], dtype='<f4').reshape(shape))
        for n in m.graph.node:
            a = {at.name: helper.get_attribute_value(at) for at in n.attribute}
            x = [env[i] for i in n.input]
            op = n.op_type
            if op == 'Identity': r = x[0]
            elif op == 'Conv':
                p = a['pads']
                r = F.conv2d(F.pad(x[0], (p[1], p[3], p[0], p[2])), x[1], x[2], stride=tuple(a['strides']), groups=a.get('group', 1))
            elif op == 'Clip': r = torch.clamp(x[0], float(x[1]), float(x[2]))
            elif op == 'Add': r = x[0] + x[1]
            elif op == 'Mul': r = x[0] * x[1]
            elif op == 'Concat': r = torch.cat(x, dim=a['axis'])
            elif op == 'GlobalAveragePool': r = x[0].mean(dim=(2, 3), keepdim=True)
            elif op == 'Sigmoid': r = torch.sigmoid(x[0])
            elif op == 'Flatten': r = x[0].reshape(x[0].shape[0], -1)
            elif op == 'Gemm': r = x[0] @ (x[1].T if a.get('transB', 0) else x[1]) + x[2]
            elif op == 'Reshape': r = x[0].reshape(tuple(int(v) for v in x[1]))
            elif op == 'Transpose': r = x[0].permute(*a['perm'])
            else: raise SystemExit('unsupported op ' + op)
            env[n.output[0]] = r
        logits = env[m.graph.output[0].name]
        assert list(logits.shape) == out_shape, (list(logits.shape), out_shape)
        print('opset', m.opset_import[0].version, 'shape', *shape)
        print(' '.join(repr(float(v)) for v in logits.flatten()))
        """;

    private static string? PythonUnavailable()
    {
        if (!File.Exists(Python)) return $"{Python} not found";
        var (code, _, err) = RunPython(["-c", "import onnx, torch, numpy"]);
        return code == 0 ? null : $"{Python} lacks onnx/torch/numpy: {err.Trim()}";
    }

    private static (int Code, string Out, string Err) RunPython(string[] args)
    {
        var psi = new ProcessStartInfo(Python) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        Task<string> stdout = p.StandardOutput.ReadToEndAsync(), stderr = p.StandardError.ReadToEndAsync();
        p.WaitForExit();
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    [SkippableTheory]
    [InlineData("small", 1)]
    [InlineData("small", 9)]
    [InlineData("random", 3)]
    [InlineData("qana", 5)]
    public void Export_PassesTheOnnxChecker_AndMatchesTheDequantizedReference(string kind, int seed)
    {
        string? why = PythonUnavailable();
        Skip.If(why is not null, why);

        ModelPackage package = kind switch
        {
            "small" => SmallPackages.Build(seed),
            "random" => QanaEdge.TestSupport.TestGraphs.RandomGraph(seed),
            _ => QanaEdge.TestSupport.TestGraphs.QanaShaped(seed),
        };
        var inputTensor = package.Graph.Tensors[package.Graph.InputTensor];
        string model = Path.Combine(_dir, "m.onnx");
        OnnxExporter.Save(package, model);

        var rng = new Random(seed);
        int h = inputTensor.Height, w = inputTensor.Width, channels = inputTensor.Channels;
        var pixels = new byte[h * w * channels];
        rng.NextBytes(pixels);
        var nchw = new float[pixels.Length];
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                for (int c = 0; c < channels; c++)
                    nchw[(c * h + y) * w + x] = pixels[(y * w + x) * channels + c] / 255f;
        string input = Path.Combine(_dir, "x.bin");
        File.WriteAllBytes(input, System.Runtime.InteropServices.MemoryMarshal.AsBytes(nchw.AsSpan()).ToArray());
        string script = Path.Combine(_dir, "eval.py");
        File.WriteAllText(script, Script);

        var (code, stdout, stderr) = RunPython([script, model, input]);
        Assert.True(code == 0, $"python failed: {stderr}");
        string[] lines = stdout.Trim().Split('\n');
        Assert.Equal($"opset 13 shape 1 {channels} {h} {w}", lines[0]);
        double[] onnx = lines[1].Split(' ').Select(s => double.Parse(s, CultureInfo.InvariantCulture)).ToArray();
        double[] reference = DequantizedReference.Logits(package.Graph, pixels);
        Assert.Equal(reference.Length, onnx.Length);
        // Not a degenerate case: some logits lie strictly inside the clamp, so the arithmetic is compared.
        var logits = package.Graph.Tensors[package.Graph.LogitsTensor];
        double lo = logits.Scale * (-128 - logits.ZeroPoint), hi = logits.Scale * (127 - logits.ZeroPoint);
        Assert.Contains(reference, v => v > lo + 1e-3 && v < hi - 1e-3);
        for (int k = 0; k < reference.Length; k++)
            Assert.True(Math.Abs(onnx[k] - reference[k]) <= 1e-4 + 1e-4 * Math.Abs(reference[k]),
                $"logit {k}: onnx {onnx[k]} vs reference {reference[k]}");
    }

    [Fact]
    public void Export_IsDeterministic_AndRefusesReadoutUpdates()
    {
        ModelPackage p = SmallPackages.Build(4);
        Assert.Equal(OnnxExporter.ToBytes(p), OnnxExporter.ToBytes(p));
        Assert.Throws<PackageFormatException>(() => OnnxExporter.ToBytes(SmallPackages.ReadoutUpdate()));
    }
}
