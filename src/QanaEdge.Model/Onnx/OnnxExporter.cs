using System.Globalization;
using System.Runtime.InteropServices;
using QanaEdge.Model.Graph;
using QanaEdge.Model.Packaging;

namespace QanaEdge.Model.Onnx;

/// <summary>
/// Writes the dequantized float32 equivalent of a package's integer graph as an ONNX model (opset 13):
/// weights become w·s_w, biases b·s_in·s_w, every fused clamp a Clip at its real bounds
/// s_out·(q − zp_out), the sigmoid table a Sigmoid, the readout is left out. The ONNX graph is NCHW:
/// input <c>input</c> float [1, C, H, W] with values in [0, 1] (pixel/255), output <c>logits</c> float
/// [1, K]. Only rounding differs from the integer engine, so this is the peer the engine is compared
/// against (ONNX Runtime) and a way to look at the network in standard tools.
/// </summary>
public static class OnnxExporter
{
    public const int Opset = 13;
    /// <summary>IR version 7 is the one that came with opset 13 (ONNX 1.8); every later runtime reads it.</summary>
    public const int IrVersion = 7;

    public static void Save(ModelPackage package, string path) => WholeFile.Write(Path.GetFullPath(path), ToBytes(package), WholeFileOptions.UserOutput);

    public static byte[] ToBytes(ModelPackage package)
    {
        PackageValidator.Validate(package);
        if (package.Manifest.Kind != PackageKind.Model)
            throw new PackageFormatException("export: only a complete model can be exported, not a readout update");
        var builder = new GraphBuilder(package.Graph);
        builder.Build();
        return Finish(package, builder);
    }

    private static byte[] Finish(ModelPackage package, GraphBuilder builder)
    {
        // ModelProto: ir_version = 1, producer_name = 2, producer_version = 3, domain = 4, model_version = 5,
        // doc_string = 6, graph = 7, opset_import = 8.
        var model = new ProtoWriter();
        model.Int64(1, IrVersion);
        model.String(2, "QanaEdge");
        model.String(3, "1");
        model.Int64(5, 1);
        model.String(6, $"{package.Manifest.ModelId} {package.Manifest.Version}: dequantized float32 equivalent of the integer graph");
        model.Message(7, builder.WriteGraph);
        model.Message(8, o => o.String(1, "").Int64(2, Opset));
        return model.Written.ToArray();
    }

    private sealed class GraphBuilder(ModelGraph graph)
    {
        private readonly List<Action<ProtoWriter>> _nodes = [];
        private readonly List<Action<ProtoWriter>> _initializers = [];
        private int _counter;
        private string _logitsName = "";

        private static string Name(int tensor) => "t" + tensor.ToString(CultureInfo.InvariantCulture);

        private string Fresh(string stem) => $"{stem}_{_counter++}";

        public void Build()
        {
            TensorSpec input = graph.Tensors[graph.InputTensor];
            // The device quantizes pixel p as q = clamp(zp + round(p / 255 / s)) (InputQuantizer), so the integer input's
            // real value s·(q − zp) is x = p/255 itself, up to that rounding and the int8 saturation: the float input
            // needs no transform, only the saturation where the input's range does not cover [0, 1]. (An affine map
            // x → s·(255x − 128 − zp), which assumed the engine is always given q = p − 128, held for scale 1/255 and
            // zero point −128 only and fed any other input quantization another image than the device's.)
            double lo = input.Scale * (-128 - input.ZeroPoint), hi = input.Scale * (127 - input.ZeroPoint);
            if (lo <= 1e-9 && hi >= 1 - 1e-9)
                Node("Identity", ["input"], [Name(graph.InputTensor)]);
            else
                Node("Clip", ["input", Scalar((float)lo), Scalar((float)hi)], [Name(graph.InputTensor)]);

            foreach (Node n in graph.Nodes) Emit(n);

            TensorSpec logits = graph.Tensors[graph.LogitsTensor];
            _logitsName = "logits";
            Node("Reshape", [Name(graph.LogitsTensor), Int64s([1, (long)logits.Height * logits.Width * logits.Channels])], [_logitsName]);
        }

        public void WriteGraph(ProtoWriter g)
        {
            // GraphProto: node = 1, name = 2, initializer = 5, input = 11, output = 12.
            foreach (var node in _nodes) g.Message(1, node);
            g.String(2, "qana");
            foreach (var init in _initializers) g.Message(5, init);
            TensorSpec input = graph.Tensors[graph.InputTensor];
            TensorSpec logits = graph.Tensors[graph.LogitsTensor];
            g.Message(11, v => ValueInfo(v, "input", [1, input.Channels, input.Height, input.Width]));
            g.Message(12, v => ValueInfo(v, _logitsName, [1, (long)logits.Height * logits.Width * logits.Channels]));
        }

        private static void ValueInfo(ProtoWriter v, string name, long[] dims)
        {
            // ValueInfoProto: name = 1, type = 2; TypeProto.tensor_type = 1: elem_type = 1, shape = 2; dim = 1: dim_value = 1.
            v.String(1, name);
            v.Message(2, t => t.Message(1, tt =>
            {
                tt.Int64(1, 1); // FLOAT
                tt.Message(2, s => { foreach (long d in dims) s.Message(1, dim => dim.Int64(1, d)); });
            }));
        }

        private void Emit(Node n)
        {
            TensorSpec o = graph.Tensors[n.Output];
            string output = Name(n.Output);
            switch (n.Kind)
            {
                case OpKind.Conv2D:
                case OpKind.DepthwiseConv2D:
                case OpKind.PointwiseConv2D:
                {
                    TensorSpec x = graph.Tensors[n.Inputs[0]];
                    int cout = o.Channels, cin = x.Channels, kh = n.KernelHeight, kw = n.KernelWidth;
                    bool depthwise = n.Kind == OpKind.DepthwiseConv2D;
                    var w = new float[depthwise ? cout * kh * kw : cout * cin * kh * kw];
                    for (int oc = 0; oc < cout; oc++)
                    {
                        double s = WeightScale(n, oc);
                        for (int y = 0; y < kh; y++)
                            for (int xk = 0; xk < kw; xk++)
                            {
                                if (depthwise)
                                {
                                    // [Kh,Kw,C] -> [C,1,Kh,Kw]
                                    w[(oc * kh + y) * kw + xk] = (float)(n.Weights![(y * kw + xk) * cout + oc] * s);
                                    continue;
                                }
                                for (int ic = 0; ic < cin; ic++)
                                {
                                    // [Cout,Kh,Kw,Cin] (pointwise: [Cout,Cin]) -> [Cout,Cin,Kh,Kw]
                                    sbyte q = n.Weights![((oc * kh + y) * kw + xk) * cin + ic];
                                    w[((oc * cin + ic) * kh + y) * kw + xk] = (float)(q * s);
                                }
                            }
                    }
                    string weights = Tensor(w, depthwise ? [cout, 1, kh, kw] : [cout, cin, kh, kw]);
                    string bias = Tensor(Bias(n, x), [cout]);
                    int padH = n.Padding == Padding.Same ? Math.Max((o.Height - 1) * n.StrideHeight + kh - x.Height, 0) : 0;
                    int padW = n.Padding == Padding.Same ? Math.Max((o.Width - 1) * n.StrideWidth + kw - x.Width, 0) : 0;
                    string conv = Fresh(n.Name + "_conv");
                    Node("Conv", [Name(n.Inputs[0]), weights, bias], [conv], a =>
                    {
                        Ints(a, "kernel_shape", [kh, kw]);
                        Ints(a, "strides", [n.StrideHeight, n.StrideWidth]);
                        // [top, left, bottom, right]: the odd extra row/column goes to the bottom/right.
                        Ints(a, "pads", [padH / 2, padW / 2, padH - padH / 2, padW - padW / 2]);
                        Ints(a, "dilations", [1, 1]);
                        Int(a, "group", depthwise ? cout : 1);
                    });
                    Clip(conv, n, o, output);
                    break;
                }
                case OpKind.Dense:
                {
                    TensorSpec x = graph.Tensors[n.Inputs[0]];
                    int outs = o.Channels, h = x.Height, wd = x.Width, c = x.Channels, ins = h * wd * c;
                    // Our flatten order is HWC; ONNX's Flatten of NCHW is CHW: permute the columns.
                    var w = new float[outs * ins];
                    for (int oc = 0; oc < outs; oc++)
                    {
                        double s = WeightScale(n, oc);
                        for (int y = 0; y < h; y++)
                            for (int xx = 0; xx < wd; xx++)
                                for (int ch = 0; ch < c; ch++)
                                    w[oc * ins + (ch * h + y) * wd + xx] = (float)(n.Weights![oc * ins + (y * wd + xx) * c + ch] * s);
                    }
                    string flat = Fresh(n.Name + "_flat");
                    Node("Flatten", [Name(n.Inputs[0])], [flat], a => Int(a, "axis", 1));
                    string gemm = Fresh(n.Name + "_gemm");
                    Node("Gemm", [flat, Tensor(w, [outs, ins]), Tensor(Bias(n, x), [outs])], [gemm], a => Int(a, "transB", 1));
                    string shaped = Fresh(n.Name + "_nchw");
                    Node("Reshape", [gemm, Int64s([1, outs, 1, 1])], [shaped]);
                    Clip(shaped, n, o, output);
                    break;
                }
                case OpKind.Concat:
                {
                    string cat = Fresh(n.Name + "_concat");
                    Node("Concat", n.Inputs.Select(Name).ToArray(), [cat], a => Int(a, "axis", 1));
                    Clip(cat, n, o, output);
                    break;
                }
                case OpKind.Add:
                case OpKind.Mul:
                {
                    string r = Fresh(n.Name + (n.Kind == OpKind.Add ? "_add" : "_mul"));
                    Node(n.Kind == OpKind.Add ? "Add" : "Mul", [Name(n.Inputs[0]), Name(n.Inputs[1])], [r]);
                    Clip(r, n, o, output);
                    break;
                }
                case OpKind.GlobalAvgPool:
                {
                    string r = Fresh(n.Name + "_gap");
                    Node("GlobalAveragePool", [Name(n.Inputs[0])], [r]);
                    Clip(r, n, o, output);
                    break;
                }
                case OpKind.Sigmoid:
                {
                    string r = Fresh(n.Name + "_sigmoid");
                    Node("Sigmoid", [Name(n.Inputs[0])], [r]);
                    Clip(r, n, o, output);
                    break;
                }
                case OpKind.Clamp:
                    Clip(Name(n.Inputs[0]), n, o, output);
                    break;
                case OpKind.Reshape:
                {
                    // A reshape of HWC data: to NHWC, reshape, back to NCHW.
                    string nhwc = Fresh(n.Name + "_nhwc");
                    Node("Transpose", [Name(n.Inputs[0])], [nhwc], a => Ints(a, "perm", [0, 2, 3, 1]));
                    string shaped = Fresh(n.Name + "_reshaped");
                    Node("Reshape", [nhwc, Int64s([1, o.Height, o.Width, o.Channels])], [shaped]);
                    Node("Transpose", [shaped], [output], a => Ints(a, "perm", [0, 3, 1, 2]));
                    break;
                }
                case OpKind.SpikingReadout:
                    // The readout turns logits into spike counts; the float model ends at the logits.
                    break;
            }
        }

        private static double WeightScale(Node n, int channel) =>
            n.WeightScales!.Length == 1 ? n.WeightScales[0] : n.WeightScales[channel];

        private static float[] Bias(Node n, TensorSpec input)
        {
            var b = new float[n.Bias!.Length];
            for (int i = 0; i < b.Length; i++) b[i] = (float)(n.Bias[i] * input.Scale * WeightScale(n, i));
            return b;
        }

        /// <summary>The clamp in the real domain: bounds s·(q − zp) of the node's clamp range.</summary>
        private void Clip(string input, Node n, TensorSpec o, string output)
        {
            float lo = (float)(o.Scale * (n.ClampMin - o.ZeroPoint));
            float hi = (float)(o.Scale * (n.ClampMax - o.ZeroPoint));
            Node("Clip", [input, Scalar(lo), Scalar(hi)], [output]);
        }

        private void Node(string op, string[] inputs, string[] outputs, Action<List<Action<ProtoWriter>>>? attributes = null)
        {
            var attrs = new List<Action<ProtoWriter>>();
            attributes?.Invoke(attrs);
            string name = Fresh(op);
            _nodes.Add(p =>
            {
                // NodeProto: input = 1, output = 2, name = 3, op_type = 4, attribute = 5.
                foreach (string i in inputs) p.String(1, i);
                foreach (string o in outputs) p.String(2, o);
                p.String(3, name);
                p.String(4, op);
                foreach (var a in attrs) p.Message(5, a);
            });
        }

        // AttributeProto: name = 1, f = 2, i = 3, ints = 8, type = 20 (INT = 2, INTS = 7).
        private static void Int(List<Action<ProtoWriter>> attrs, string name, long value) =>
            attrs.Add(a => a.String(1, name).Int64(3, value).Int64(20, 2));

        private static void Ints(List<Action<ProtoWriter>> attrs, string name, long[] values) =>
            attrs.Add(a => { a.String(1, name); foreach (long v in values) a.Int64(8, v); a.Int64(20, 7); });

        private string Tensor(float[] values, long[] dims)
        {
            string name = Fresh("w");
            byte[] raw = MemoryMarshal.AsBytes(values.AsSpan()).ToArray();
            if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("ONNX raw_data is little-endian");
            // TensorProto: dims = 1, data_type = 2 (FLOAT = 1), name = 8, raw_data = 9.
            _initializers.Add(t => { foreach (long d in dims) t.Int64(1, d); t.Int64(2, 1).String(8, name).Bytes(9, raw); });
            return name;
        }

        private string Scalar(float value) => Tensor([value], []);

        private string Int64s(long[] values)
        {
            string name = Fresh("shape");
            byte[] raw = MemoryMarshal.AsBytes(values.AsSpan()).ToArray();
            _initializers.Add(t => t.Int64(1, values.Length).Int64(2, 7).String(8, name).Bytes(9, raw));
            return name;
        }
    }
}
