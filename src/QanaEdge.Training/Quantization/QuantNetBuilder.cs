using QanaEdge.Model.Graph;
using QanaEdge.Training.Engine;
using QanaEdge.Training.Network;

namespace QanaEdge.Training.Quantization;

/// <summary>
/// Builds the fake-quantized twin of a trained float QANA: batch norm folded into the preceding
/// convolution (W' = γW/σ, b' = γ(b − μ)/σ + β with σ = √(var + ε)), bounded activations fused into their
/// producers, dropout dropped. In the Ghost module the BN after the concat is per channel, so its first
/// half folds into a second copy of the primary pointwise conv (the ghost depthwise conv still reads the
/// un-normalised primary output) and its second half into the ghost depthwise conv.
/// </summary>
public static class QuantNetBuilder
{
    /// <param name="inputGrid">How the device quantizes the input pixels (the package's input tensor); null: the
    /// default, scale 1/255 and zero point −128 (q = p − 128).</param>
    public static QuantNet FromFloat(QanaNet net, QuantScheme scheme, ActivationGrid? inputGrid = null)
    {
        var o = net.Options;
        var grid = inputGrid ?? QuantNet.DefaultInputGrid;
        QuantNet.CheckInputGrid(grid);
        var input = new QTensor { Name = "input", Grid = grid, FirstLayer = true };
        var q = new QuantNet(scheme, o, input);
        var b = new Builder(q, scheme);

        var x = b.Weighted("stem", OpKind.Conv2D, net.Stem, net.StemBn, 0, net.StemBn.Channels, input, Relu6, firstLayer: true);
        foreach (var blk in net.Blocks)
        {
            var d = b.Weighted(blk.Name + ".primary.dw", OpKind.DepthwiseConv2D, blk.PrimaryDw, null, 0, 0, x, null);
            QTensor c;
            if (blk.Ghost)
            {
                int half = blk.Out / 2;
                var praw = b.Weighted(blk.Name + ".primary.pw", OpKind.PointwiseConv2D, blk.PrimaryPw, null, 0, 0, d, null);
                var pbn = b.Weighted(blk.Name + ".primary.pw_bn", OpKind.PointwiseConv2D, blk.PrimaryPw, blk.Bn, 0, half, d, Relu6);
                var gbn = b.Weighted(blk.Name + ".ghost.dw_bn", OpKind.DepthwiseConv2D, blk.GhostDw!, blk.Bn, half, half, praw, Relu6);
                c = b.Simple(blk.Name + ".concat", OpKind.Concat, new Engine.Concat(blk.Name + ".concat"), [pbn, gbn], bounds: (0, 6));
            }
            else
                c = b.Weighted(blk.Name + ".primary.pw_bn", OpKind.PointwiseConv2D, blk.PrimaryPw, blk.Bn, 0, blk.Out, d, Relu6);
            var y = c;
            if (blk.EcaDw is not null)
            {
                var e1 = b.Weighted(blk.Name + ".eca.dw", OpKind.DepthwiseConv2D, blk.EcaDw, null, 0, 0, c, null);
                var e2 = b.Weighted(blk.Name + ".eca.pw", OpKind.PointwiseConv2D, blk.EcaPw!, null, 0, 0, e1, null);
                var sg = b.Simple(blk.Name + ".eca.sigmoid", OpKind.Sigmoid, new TableSigmoid(blk.Name + ".eca.sigmoid"), [e2], bounds: (0, 1));
                y = b.Simple(blk.Name + ".eca.gate", OpKind.Mul, new Engine.Mul(blk.Name + ".eca.gate"), [c, sg], bounds: (0, 6));
            }
            // A 1×1 stride-s convolution: Conv2D (the engine's pointwise kernel keeps height and width).
            var r = b.Weighted(blk.Name + ".proj", blk.Stride == 1 ? OpKind.PointwiseConv2D : OpKind.Conv2D, blk.Projection, null, 0, 0, x, null);
            x = b.Simple(blk.Name + ".add", OpKind.Add, new Engine.Add(blk.Name + ".add"), [y, r], bounds: null);
        }
        var td = b.Weighted("transform.dw", OpKind.DepthwiseConv2D, net.TransformDw, null, 0, 0, x, null);
        x = b.Weighted("transform.pw_bn", OpKind.PointwiseConv2D, net.TransformPw, net.TransformBn, 0, net.TransformBn.Channels, td, Relu6);
        if (net.Se is { } se)
        {
            var gap = b.Simple("se.gap", OpKind.GlobalAvgPool, new GlobalAvgPool("se.gap"), [x], bounds: (0, 6));
            var f1 = b.Weighted("se.fc1", OpKind.Dense, se.Fc1, null, 0, 0, gap, (0, double.PositiveInfinity));
            var f2 = b.Weighted("se.fc2", OpKind.Dense, se.Fc2, null, 0, 0, f1, null);
            var sg = b.Simple("se.sigmoid", OpKind.Sigmoid, new TableSigmoid("se.sigmoid"), [f2], bounds: (0, 1));
            x = b.Simple("se.gate", OpKind.Mul, new Engine.Mul("se.gate"), [x, sg], bounds: (0, 6));
        }
        // The pooled head input: its range is calibrated (averages sit well inside [0, 6], so the a priori
        // bound would waste levels); the division by H·W folds into the output scale.
        if (net.HeadPool is not null)
            x = b.Simple("head.gap", OpKind.GlobalAvgPool, new GlobalAvgPool("head.gap"), [x], bounds: null);
        var flat = b.Simple("flatten", OpKind.Reshape, new Flatten("flatten"), [x], bounds: null, quantize: false);
        var head = b.Weighted("head", OpKind.Dense, net.Head, null, 0, 0, flat, null);
        if (!o.QuantHead) ((WeightedStep)q.Steps[^1]).QuantizeWeights = false;
        return q;
    }

    private static readonly (double, double)? Relu6 = (0, 6);

    internal sealed class Builder(QuantNet q, QuantScheme scheme)
    {
        public QTensor Weighted(string name, OpKind kind, Layer source, BatchNorm? bn, int bnOffset, int bnCount,
            QTensor input, (double Lo, double Hi)? clamp, bool firstLayer = false)
        {
            // Fresh engine layer (its weight buffer holds the quantized weights) + float masters.
            Layer layer; float[] w; float[]? bias; int cout;
            switch (source)
            {
                case Conv2d c:
                    cout = bn is null ? c.OutChannels : bnCount;
                    if (bn is not null && (bnOffset < 0 || bnOffset + cout > c.OutChannels))
                        throw new ArgumentException($"{name}: channels [{bnOffset}, {bnOffset + cout}) of a {c.OutChannels}-channel convolution");
                    layer = new Conv2d(name, c.InChannels, cout, c.Kernel, c.Stride, bias: true);
                    w = new float[c.Kernel * c.Kernel * c.InChannels * cout];
                    // Keep the columns [bnOffset.. bnOffset+cout) when folding a part (they are all columns otherwise): the
                    // conv's output channel bnOffset + k is the one the batch norm's channel bnOffset + k normalises.
                    int from = bn is null ? 0 : bnOffset;
                    for (int r = 0; r < c.Kernel * c.Kernel * c.InChannels; r++)
                        for (int k = 0; k < cout; k++) w[r * cout + k] = c.Weight.Value[r * c.OutChannels + from + k];
                    bias = c.Bias?.Value.AsSpan(from, cout).ToArray();
                    break;
                case DepthwiseConv2d d:
                    cout = d.Channels;
                    layer = new DepthwiseConv2d(name, d.Channels, d.Kernel, d.Stride, bias: true);
                    w = (float[])d.Weight.Value.Clone();
                    bias = d.Bias?.Value;
                    break;
                case Dense d:
                    cout = d.Out;
                    layer = new Dense(name, d.In, d.Out);
                    w = (float[])d.Weight.Value.Clone();
                    bias = d.Bias.Value;
                    break;
                default: throw new ArgumentException($"{name}: not a weighted layer");
            }
            var mw = new Parameter(name + ".w", w.Length);
            var mb = new Parameter(name + ".b", cout) { Decay = false };
            w.CopyTo(mw.Value, 0);
            if (bias is not null) bias.AsSpan(0, cout).CopyTo(mb.Value);
            string reparam = "none";
            if (bn is not null)
            {
                // y = a·(conv + b) + (β − a·μ), a = γ/√(var+ε), per output channel (fastest index in every layout).
                for (int k = 0; k < cout; k++)
                {
                    int ch = bnOffset + k;
                    float a = bn.Gamma.Value[ch] / MathF.Sqrt(bn.RunningVar[ch] + bn.Epsilon);
                    for (int i = k; i < mw.Length; i += cout) mw.Value[i] *= a;
                    mb.Value[k] = a * (mb.Value[k] - bn.RunningMean[ch]) + bn.Beta.Value[ch];
                }
                reparam = "bn-fold";
            }
            var outT = new QTensor
            {
                Name = name, Clamp = clamp, FirstLayer = firstLayer,
                Bounds = clamp is { } c2 && !double.IsPositiveInfinity(c2.Hi) ? c2 : null,
                Fq = new FakeQuant(name + ".fq")
                {
                    ClampLo = clamp is { } clo ? (float)clo.Lo : float.NegativeInfinity,
                    ClampHi = clamp is { } chi ? (float)chi.Hi : float.PositiveInfinity,
                },
            };
            string kernel = kind switch
            {
                OpKind.Conv2D => $"conv2d-{((Conv2d)source).Kernel}x{((Conv2d)source).Kernel}-s{((Conv2d)source).Stride}",
                OpKind.DepthwiseConv2D => $"dw-{((DepthwiseConv2d)source).Kernel}x{((DepthwiseConv2d)source).Kernel}-s{((DepthwiseConv2d)source).Stride}",
                OpKind.PointwiseConv2D => ((Conv2d)source).Stride == 1 ? "gemm-pw" : $"gemm-pw-s{((Conv2d)source).Stride}",
                _ => "gemm-dense",
            };
            if (clamp is not null) reparam += clamp.Value.Hi == 6 ? "+relu6-fused" : "+relu-fused";
            q.Steps.Add(new WeightedStep
            {
                Name = name, Kind = kind, Inputs = [input], Output = outT, Layer = layer, MasterWeight = mw, MasterBias = mb,
                Scheme = scheme, Reparameterisation = reparam, KernelName = kernel,
            });
            return outT;
        }

        public QTensor Simple(string name, OpKind kind, Layer op, QTensor[] inputs, (double, double)? bounds, bool quantize = true)
        {
            var outT = new QTensor { Name = name, Bounds = bounds, Fq = quantize ? new FakeQuant(name + ".fq") : null };
            string reparam = kind switch
            {
                OpKind.GlobalAvgPool => "gap-scale-fold",
                OpKind.Sigmoid => "lookup-table",
                _ => "none",
            };
            q.Steps.Add(new SimpleStep { Name = name, Kind = kind, Inputs = inputs, Output = outT, Op = op, Reparameterisation = reparam, KernelName = kind.ToString().ToLowerInvariant() });
            return outT;
        }
    }
}
