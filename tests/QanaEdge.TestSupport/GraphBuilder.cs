using QanaEdge.Model.Graph;

namespace QanaEdge.TestSupport;

/// <summary>
/// Builds valid integer graphs in code with sensibly scaled random weights: the output scale of a
/// weighted layer is chosen so that a typical accumulator (|x − z| ≈ 70, |w| ≈ 73, √taps terms)
/// lands about ±40 quanta from the zero point, neither saturated nor collapsed to a few levels.
/// </summary>
public sealed class GraphBuilder(int seed)
{
    private readonly Random _rng = new(seed);
    private readonly List<TensorSpec> _tensors = [];
    private readonly List<Node> _nodes = [];

    public Random Rng => _rng;
    public IReadOnlyList<TensorSpec> Tensors => _tensors;
    public IReadOnlyList<Node> Nodes => _nodes;
    public TensorSpec this[int t] => _tensors[t];

    public int Tensor(string name, int h, int w, int c, double scale, int zeroPoint, DataType type = DataType.Int8)
    {
        _tensors.Add(new TensorSpec { Name = name, Height = h, Width = w, Channels = c, Scale = scale, ZeroPoint = zeroPoint, Type = type });
        return _tensors.Count - 1;
    }

    /// <summary>The input tensor: an image's quantization (zero point −128) unless a test needs another zero point.</summary>
    public int Input(int h, int w, int c, int zeroPoint = -128) => Tensor("input", h, w, c, 1.0 / 255, zeroPoint);

    /// <summary>Scale factor in [lo, hi] on a log scale.</summary>
    public double Jitter(double lo = 0.7, double hi = 1.4) => lo * Math.Pow(hi / lo, _rng.NextDouble());

    private sbyte[] RandomWeights(int n, int amplitude = 127)
    {
        var w = new sbyte[n];
        for (int i = 0; i < n; i++) w[i] = (sbyte)_rng.Next(-amplitude, amplitude + 1);
        return w;
    }

    private double[] WeightScales(int cout, bool perChannel)
    {
        var s = new double[perChannel ? cout : 1];
        for (int i = 0; i < s.Length; i++) s[i] = 0.002 * Jitter(0.5, 2);
        return s;
    }

    /// <summary>ReLU6 output quantization: scale 6/255, zero point −128, clamp [q(0), q(6)] = [−128, 127].</summary>
    public (double Scale, int Zp, int Lo, int Hi) Relu6 => (6.0 / 255, -128, -128, 127);

    /// <summary>A weighted layer (Conv2D, DepthwiseConv2D, PointwiseConv2D or Dense) with random weights.</summary>
    public int Weighted(string name, OpKind kind, int input, int cout, int k = 1, int stride = 1, Padding padding = Padding.Same,
        bool relu6 = false, int? zeroPoint = null, bool perChannel = true, int kw = -1, int strideW = -1, int biasAmplitude = 2000)
    {
        var x = _tensors[input];
        if (kw < 0) kw = k;
        if (strideW < 0) strideW = stride;
        int h = x.Height, w = x.Width, cin = x.Channels, taps;
        switch (kind)
        {
            case OpKind.Conv2D:
                h = Out(x.Height, k, stride, padding); w = Out(x.Width, kw, strideW, padding); taps = k * kw * cin; break;
            case OpKind.DepthwiseConv2D:
                h = Out(x.Height, k, stride, padding); w = Out(x.Width, kw, strideW, padding); cout = cin; taps = k * kw; break;
            case OpKind.PointwiseConv2D:
                taps = cin; break;
            default:
                h = 1; w = 1; taps = x.Length; cin = x.Length; break;
        }
        int wLen = kind switch
        {
            OpKind.Conv2D => cout * k * kw * cin,
            OpKind.DepthwiseConv2D => k * kw * cout,
            _ => cout * cin,
        };
        var ws = WeightScales(cout, perChannel);
        double meanWs = ws.Average();
        var bias = new int[cout];
        for (int i = 0; i < cout; i++) bias[i] = _rng.Next(-biasAmplitude, biasAmplitude + 1) * (int)Math.Ceiling(Math.Sqrt(taps));
        int y;
        int lo = sbyte.MinValue, hi = sbyte.MaxValue;
        double outScale = x.Scale * meanWs * 125 * Math.Sqrt(taps) * Jitter();
        if (relu6)
        {
            // Bounded activation: [0, 6·(scale/ (6/255))] — the quantum follows the accumulator spread.
            y = Tensor(name, h, w, cout, outScale, -128);
            lo = -128;
            hi = 127;
        }
        else y = Tensor(name, h, w, cout, outScale, zeroPoint ?? _rng.Next(-20, 21));
        _nodes.Add(new Node
        {
            Name = name, Kind = kind, Inputs = [input], Output = y,
            KernelHeight = kind is OpKind.Conv2D or OpKind.DepthwiseConv2D ? k : 1,
            KernelWidth = kind is OpKind.Conv2D or OpKind.DepthwiseConv2D ? kw : 1,
            StrideHeight = kind is OpKind.Conv2D or OpKind.DepthwiseConv2D ? stride : 1,
            StrideWidth = kind is OpKind.Conv2D or OpKind.DepthwiseConv2D ? strideW : 1,
            Padding = padding,
            Weights = RandomWeights(wLen), WeightScales = ws, Bias = bias, ClampMin = lo, ClampMax = hi,
            Reparameterisation = "bn-fold",
            Kernel = kind.ToString(),
        });
        return y;
    }

    public static int Out(int input, int k, int stride, Padding padding) =>
        padding == Padding.Same ? (input + stride - 1) / stride : (input - k) / stride + 1;

    /// <summary>Sigmoid with the exact table for the input's quantization; output scale 1/256, zero point −128.</summary>
    public int Sigmoid(string name, int input)
    {
        var x = _tensors[input];
        int y = Tensor(name, x.Height, x.Width, x.Channels, 1.0 / 256, -128);
        var table = new sbyte[256];
        for (int q = -128; q < 128; q++)
        {
            double s = 1.0 / (1.0 + Math.Exp(-x.Scale * (q - x.ZeroPoint)));
            table[q + 128] = (sbyte)Math.Clamp(Math.Round(s * 256, MidpointRounding.AwayFromZero) - 128, -128, 127);
        }
        _nodes.Add(new Node { Name = name, Kind = OpKind.Sigmoid, Inputs = [input], Output = y, Table = table, Kernel = "lut256" });
        return y;
    }

    public int Mul(string name, int x, int gate, bool relu6 = false)
    {
        var xs = _tensors[x];
        int y = Tensor(name, xs.Height, xs.Width, xs.Channels, xs.Scale * Jitter(0.6, 1.0), relu6 ? -128 : xs.ZeroPoint);
        _nodes.Add(new Node { Name = name, Kind = OpKind.Mul, Inputs = [x, gate], Output = y, Kernel = "gate",
            ClampMin = relu6 ? -128 : sbyte.MinValue });
        return y;
    }

    public int Add(string name, int a, int b, bool relu6 = false)
    {
        var sa = _tensors[a];
        var sb = _tensors[b];
        int y = Tensor(name, sa.Height, sa.Width, sa.Channels, Math.Max(sa.Scale, sb.Scale) * Jitter(1.0, 2.0),
            relu6 ? -128 : _rng.Next(-20, 21));
        _nodes.Add(new Node { Name = name, Kind = OpKind.Add, Inputs = [a, b], Output = y, Kernel = "add-fixedpoint",
            ClampMin = relu6 ? -128 : sbyte.MinValue });
        return y;
    }

    public int Concat(string name, int[] inputs, bool relu6 = false, bool sameQuantization = false)
    {
        var first = _tensors[inputs[0]];
        double scale = sameQuantization ? first.Scale : inputs.Max(i => _tensors[i].Scale) * Jitter(0.8, 1.3);
        int zp = sameQuantization ? first.ZeroPoint : relu6 ? -128 : _rng.Next(-20, 21);
        int y = Tensor(name, first.Height, first.Width, inputs.Sum(i => _tensors[i].Channels), scale, zp);
        _nodes.Add(new Node { Name = name, Kind = OpKind.Concat, Inputs = inputs, Output = y, Kernel = "concat",
            ClampMin = relu6 ? -128 : sbyte.MinValue });
        return y;
    }

    public int Gap(string name, int input)
    {
        var x = _tensors[input];
        int y = Tensor(name, 1, 1, x.Channels, x.Scale * Jitter(0.5, 1.0), x.ZeroPoint);
        _nodes.Add(new Node { Name = name, Kind = OpKind.GlobalAvgPool, Inputs = [input], Output = y, Reparameterisation = "gap-scale-fold", Kernel = "gap-sum" });
        return y;
    }

    public int Clamp(string name, int input, int lo, int hi, bool rescale = false)
    {
        var x = _tensors[input];
        int y = rescale ? Tensor(name, x.Height, x.Width, x.Channels, x.Scale * Jitter(), Math.Clamp(x.ZeroPoint + _rng.Next(-5, 6), -128, 127))
                        : Tensor(name, x.Height, x.Width, x.Channels, x.Scale, x.ZeroPoint);
        _nodes.Add(new Node { Name = name, Kind = OpKind.Clamp, Inputs = [input], Output = y, ClampMin = lo, ClampMax = hi, Kernel = "clamp" });
        return y;
    }

    public int Flatten(string name, int input)
    {
        var x = _tensors[input];
        int y = Tensor(name, 1, 1, x.Length, x.Scale, x.ZeroPoint);
        _nodes.Add(new Node { Name = name, Kind = OpKind.Reshape, Inputs = [input], Output = y, Kernel = "view" });
        return y;
    }

    public int Readout(string name, int logits, int timeSteps, int[] thresholds)
    {
        var x = _tensors[logits];
        int y = Tensor(name, 1, 1, x.Length, 1.0, 0, DataType.Int32);
        _nodes.Add(new Node { Name = name, Kind = OpKind.SpikingReadout, Inputs = [logits], Output = y, TimeSteps = timeSteps,
            Thresholds = thresholds, Kernel = "if-readout" });
        return y;
    }

    public ModelGraph Build(int input, int logits, int output) => new()
    {
        Tensors = [.. _tensors], Nodes = [.. _nodes], InputTensor = input, LogitsTensor = logits, OutputTensor = output,
    };
}
