using QanaEdge.Model.Graph;
using QanaEdge.Model.Packaging;

namespace QanaEdge.Model.Tests;

/// <summary>
/// The dequantized float semantics of a graph, written directly in HWC from docs/model-format.md: the
/// oracle the ONNX export is compared with. Deliberately naive (plain loops, doubles).
/// </summary>
public static class DequantizedReference
{
    /// <summary>Logits (real values) for an image given as HWC pixels.</summary>
    public static double[] Logits(ModelGraph g, byte[] pixelsHwc)
    {
        var values = new double[g.Tensors.Length][];
        TensorSpec inT = g.Tensors[g.InputTensor];
        // The device's int8 input means pixel/255 (InputQuantizer), saturated to the input tensor's range.
        double inLo = inT.Scale * (-128 - inT.ZeroPoint), inHi = inT.Scale * (127 - inT.ZeroPoint);
        values[g.InputTensor] = pixelsHwc.Select(p => Math.Clamp(p / 255.0, inLo, inHi)).ToArray();
        foreach (Node n in g.Nodes)
        {
            if (n.Kind == OpKind.SpikingReadout) continue;
            TensorSpec o = g.Tensors[n.Output];
            double lo = o.Scale * (n.ClampMin - o.ZeroPoint), hi = o.Scale * (n.ClampMax - o.ZeroPoint);
            double[] r = Run(g, n, values);
            if (n.Kind != OpKind.Reshape) for (int i = 0; i < r.Length; i++) r[i] = Math.Clamp(r[i], lo, hi);
            values[n.Output] = r;
        }
        return values[g.LogitsTensor];
    }

    private static double Ws(Node n, int c) => n.WeightScales!.Length == 1 ? n.WeightScales[0] : n.WeightScales[c];

    private static double[] Run(ModelGraph g, Node n, double[][] v)
    {
        TensorSpec o = g.Tensors[n.Output];
        TensorSpec x = g.Tensors[n.Inputs[0]];
        double[] a = v[n.Inputs[0]];
        var r = new double[o.Height * o.Width * o.Channels];
        switch (n.Kind)
        {
            case OpKind.Conv2D:
            case OpKind.DepthwiseConv2D:
            case OpKind.PointwiseConv2D:
            {
                int kh = n.KernelHeight, kw = n.KernelWidth;
                int padTop = n.Padding == Padding.Same ? Math.Max((o.Height - 1) * n.StrideHeight + kh - x.Height, 0) / 2 : 0;
                int padLeft = n.Padding == Padding.Same ? Math.Max((o.Width - 1) * n.StrideWidth + kw - x.Width, 0) / 2 : 0;
                for (int oy = 0; oy < o.Height; oy++)
                    for (int ox = 0; ox < o.Width; ox++)
                        for (int oc = 0; oc < o.Channels; oc++)
                        {
                            double acc = n.Bias![oc] * x.Scale * Ws(n, oc);
                            for (int ky = 0; ky < kh; ky++)
                                for (int kx = 0; kx < kw; kx++)
                                {
                                    int iy = oy * n.StrideHeight + ky - padTop, ix = ox * n.StrideWidth + kx - padLeft;
                                    if (iy < 0 || ix < 0 || iy >= x.Height || ix >= x.Width) continue; // real 0
                                    if (n.Kind == OpKind.DepthwiseConv2D)
                                    {
                                        acc += a[(iy * x.Width + ix) * x.Channels + oc] * n.Weights![(ky * kw + kx) * o.Channels + oc] * Ws(n, oc);
                                        continue;
                                    }
                                    for (int ic = 0; ic < x.Channels; ic++)
                                        acc += a[(iy * x.Width + ix) * x.Channels + ic] * n.Weights![((oc * kh + ky) * kw + kx) * x.Channels + ic] * Ws(n, oc);
                                }
                            r[(oy * o.Width + ox) * o.Channels + oc] = acc;
                        }
                return r;
            }
            case OpKind.Dense:
                for (int oc = 0; oc < r.Length; oc++)
                {
                    double acc = n.Bias![oc] * x.Scale * Ws(n, oc);
                    for (int i = 0; i < a.Length; i++) acc += a[i] * n.Weights![oc * a.Length + i] * Ws(n, oc);
                    r[oc] = acc;
                }
                return r;
            case OpKind.Concat:
            {
                int offset = 0;
                foreach (int t in n.Inputs)
                {
                    TensorSpec s = g.Tensors[t];
                    for (int p = 0; p < o.Height * o.Width; p++)
                        for (int c = 0; c < s.Channels; c++)
                            r[p * o.Channels + offset + c] = v[t][p * s.Channels + c];
                    offset += s.Channels;
                }
                return r;
            }
            case OpKind.Add:
                for (int i = 0; i < r.Length; i++) r[i] = a[i] + v[n.Inputs[1]][i];
                return r;
            case OpKind.Mul:
            {
                TensorSpec gs = g.Tensors[n.Inputs[1]];
                double[] gate = v[n.Inputs[1]];
                for (int p = 0; p < o.Height * o.Width; p++)
                    for (int c = 0; c < o.Channels; c++)
                    {
                        int gi = gs.Height == 1 && gs.Width == 1 ? c : gs.Channels == 1 ? p : p * o.Channels + c;
                        r[p * o.Channels + c] = a[p * o.Channels + c] * gate[gi];
                    }
                return r;
            }
            case OpKind.GlobalAvgPool:
                for (int c = 0; c < o.Channels; c++)
                {
                    double sum = 0;
                    for (int p = 0; p < x.Height * x.Width; p++) sum += a[p * x.Channels + c];
                    r[c] = sum / (x.Height * x.Width);
                }
                return r;
            case OpKind.Sigmoid:
                for (int i = 0; i < r.Length; i++) r[i] = 1 / (1 + Math.Exp(-a[i]));
                return r;
            case OpKind.Clamp:
            case OpKind.Reshape:
                Array.Copy(a, r, r.Length);
                return r;
            default:
                throw new InvalidOperationException(n.Kind.ToString());
        }
    }
}
