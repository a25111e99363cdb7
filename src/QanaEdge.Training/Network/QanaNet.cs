using QanaEdge.Training.Engine;

namespace QanaEdge.Training.Network;

/// <summary>
/// The float QANA network (CONTRACTS.md shape) with batch norm, trained first; <see cref="Quantization.QuantNet"/>
/// is its BN-folded, fake-quantized twin that maps one-to-one onto the integer graph.
/// </summary>
public sealed class QanaNet : ITrainable
{
    public QanaOptions Options { get; }
    public Conv2d Stem { get; }
    public BatchNorm StemBn { get; }
    public Activation StemAct { get; }
    public GhostBlock[] Blocks { get; }
    public DepthwiseConv2d TransformDw { get; }
    public Conv2d TransformPw { get; }
    public BatchNorm TransformBn { get; }
    public Activation TransformAct { get; }
    public SeGate? Se { get; }
    /// <summary>The head's pooling when <see cref="QanaOptions.PooledHead"/> is on.</summary>
    public GlobalAvgPool? HeadPool { get; }
    public Flatten Flat { get; } = new("flatten");
    public Dense Head { get; }
    public int FinalSize { get; }

    public QanaNet(QanaOptions options, ulong seed)
    {
        options.Validate();
        Options = options;
        Stem = new Conv2d("stem", 3, options.StemChannels, 3, 1, bias: false);
        StemBn = new BatchNorm("stem.bn", options.StemChannels);
        StemAct = new Activation("stem.relu6", ActivationKind.Relu6);
        int cin = options.StemChannels, size = options.InputSize;
        Blocks = new GhostBlock[options.Blocks.Length];
        for (int i = 0; i < Blocks.Length; i++)
        {
            var (cout, stride) = options.Blocks[i];
            Blocks[i] = new GhostBlock($"block{i + 1}", cin, cout, stride, options, seed + (ulong)i * 7919);
            cin = cout;
            size = SamePadding.OutSize(size, stride);
        }
        FinalSize = size;
        TransformDw = new DepthwiseConv2d("transform.dw", cin, 3, 1, bias: false);
        TransformPw = new Conv2d("transform.pw", cin, cin, 1, 1, bias: false);
        TransformBn = new BatchNorm("transform.bn", cin);
        TransformAct = new Activation("transform.relu6", ActivationKind.Relu6);
        if (options.Se) Se = new SeGate("se", cin, Math.Max(4, cin / options.SeReduction));
        if (options.PooledHead) HeadPool = new GlobalAvgPool("head.gap");
        Head = new Dense("head", (options.PooledHead ? 1 : size * size) * cin, options.NumClasses);
        Initialize(seed);
    }

    public int Channels => Options.Blocks[^1].Channels;

    public IEnumerable<Parameter> Parameters => Layers.SelectMany(l => l.Parameters);

    public IEnumerable<Layer> Layers
    {
        get
        {
            yield return Stem; yield return StemBn;
            foreach (var b in Blocks) foreach (var l in b.Layers) yield return l;
            yield return TransformDw; yield return TransformPw; yield return TransformBn;
            if (Se is not null) foreach (var l in Se.Layers) yield return l;
            yield return Head;
        }
    }

    public IEnumerable<BatchNorm> BatchNorms => Layers.OfType<BatchNorm>();

    /// <summary>x: [N, S, S, 3] in [0, 1]. Returns logits [N,1,1,K].</summary>
    public Tensor Forward(Tape tape, Tensor x) => Head.Forward(tape, Top(tape, Trunk(tape, x, Blocks.Length), Blocks.Length));

    /// <summary>The stem and the first <paramref name="blocks"/> blocks: the part a partial fine-tune keeps frozen.</summary>
    public Tensor Trunk(Tape tape, Tensor x, int blocks)
    {
        var h = StemAct.Forward(tape, StemBn.Forward(tape, Stem.Forward(tape, x)));
        for (int i = 0; i < blocks; i++) h = Blocks[i].Forward(tape, h);
        return h;
    }

    /// <summary>
    /// Blocks from <paramref name="fromBlock"/> on, the transform, SE, the head's pooling if any, and flatten: the
    /// penultimate embedding [N,1,1,H·W·C] (HWC order; [N,1,1,C] pooled) that the linear head sees — what
    /// embedding-space SMOTE works on.
    /// </summary>
    public Tensor Top(Tape tape, Tensor h, int fromBlock)
    {
        for (int i = fromBlock; i < Blocks.Length; i++) h = Blocks[i].Forward(tape, h);
        h = TransformAct.Forward(tape, TransformBn.Forward(tape, TransformPw.Forward(tape, TransformDw.Forward(tape, h))));
        if (Se is not null) h = Se.Forward(tape, h);
        if (HeadPool is not null) h = HeadPool.Forward(tape, h);
        return Flat.Forward(tape, h);
    }

    /// <summary>Width of the penultimate embedding (the head's input).</summary>
    public int EmbeddingSize => Head.In;

    /// <summary>He-normal for convolutions (fan-in), small normal for the head, zeros for biases.</summary>
    private void Initialize(ulong seed)
    {
        var rng = new Rng(seed);
        foreach (var layer in Layers)
            switch (layer)
            {
                case Conv2d c: Fill(rng, c.Weight.Value, Math.Sqrt(2.0 / (c.Kernel * c.Kernel * c.InChannels))); break;
                case DepthwiseConv2d d: Fill(rng, d.Weight.Value, Math.Sqrt(2.0 / (d.Kernel * d.Kernel))); break;
                case Dense d: Fill(rng, d.Weight.Value, Math.Sqrt(1.0 / d.In)); break;
            }
    }

    internal static void Fill(Rng rng, float[] w, double std)
    {
        for (int i = 0; i < w.Length; i++) w[i] = (float)(rng.NextGaussian() * std);
    }

    /// <summary>Multiply-accumulates of one forward pass (convolutions, dense, gates).</summary>
    public long Macs()
    {
        long macs = 0;
        int s = Options.InputSize;
        macs += (long)s * s * 27 * Options.StemChannels;
        int cin = Options.StemChannels;
        foreach (var (cout, stride) in Options.Blocks)
        {
            int o = SamePadding.OutSize(s, stride);
            long hw = (long)o * o;
            macs += hw * 9 * cin;                               // primary depthwise
            macs += Options.Ghost ? hw * cin * (cout / 2) + hw * 9 * (cout / 2) : hw * cin * cout;
            if (Options.Eca) macs += hw * 9 * cout + hw * cout * cout + hw * cout;
            macs += hw * cin * cout;                            // projection
            cin = cout; s = o;
        }
        macs += (long)s * s * (9 * cin + cin * cin);
        if (Options.Se) macs += 2L * cin * Math.Max(4, cin / Options.SeReduction) + (long)s * s * cin;
        macs += Options.PooledHead ? (long)s * s * cin + (long)cin * Options.NumClasses : (long)s * s * cin * Options.NumClasses;
        return macs;
    }
}

/// <summary>
/// One QANA block: Ghost module (depthwise 3×3 stride s → pointwise Cin→Cout/2 = primary; depthwise 3×3 on
/// the primary half = ghost; concat) → BN → ReLU6 → dropout → SA-ECA gate (depthwise 3×3 → pointwise → sigmoid
/// → element-wise product) → plus a 1×1 stride-s projection of the block input.
/// </summary>
public sealed class GhostBlock
{
    public string Name { get; }
    public int In { get; }
    public int Out { get; }
    public int Stride { get; }
    public bool Ghost { get; }
    public DepthwiseConv2d PrimaryDw { get; }
    public Conv2d PrimaryPw { get; }
    public DepthwiseConv2d? GhostDw { get; }
    public Concat? Cat { get; }
    public BatchNorm Bn { get; }
    public Activation Act { get; }
    public Dropout Drop { get; }
    public DepthwiseConv2d? EcaDw { get; }
    public Conv2d? EcaPw { get; }
    public Activation? EcaSigmoid { get; }
    public Mul? EcaGate { get; }
    public Conv2d Projection { get; }
    public Add Residual { get; }

    public GhostBlock(string name, int cin, int cout, int stride, QanaOptions o, ulong seed)
    {
        Name = name; In = cin; Out = cout; Stride = stride; Ghost = o.Ghost;
        PrimaryDw = new DepthwiseConv2d(name + ".primary.dw", cin, 3, stride, bias: false);
        PrimaryPw = new Conv2d(name + ".primary.pw", cin, o.Ghost ? cout / 2 : cout, 1, 1, bias: false);
        if (o.Ghost)
        {
            GhostDw = new DepthwiseConv2d(name + ".ghost.dw", cout / 2, 3, 1, bias: false);
            Cat = new Concat(name + ".concat");
        }
        Bn = new BatchNorm(name + ".bn", cout);
        Act = new Activation(name + ".relu6", ActivationKind.Relu6);
        Drop = new Dropout(name + ".dropout", o.DropoutRate, seed);
        if (o.Eca)
        {
            EcaDw = new DepthwiseConv2d(name + ".eca.dw", cout, 3, 1, bias: false);
            EcaPw = new Conv2d(name + ".eca.pw", cout, cout, 1, 1, bias: true);
            EcaSigmoid = new Activation(name + ".eca.sigmoid", ActivationKind.Sigmoid);
            EcaGate = new Mul(name + ".eca.mul");
        }
        Projection = new Conv2d(name + ".proj", cin, cout, 1, stride, bias: true);
        Residual = new Add(name + ".add");
    }

    public IEnumerable<Layer> Layers
    {
        get
        {
            yield return PrimaryDw; yield return PrimaryPw;
            if (GhostDw is not null) yield return GhostDw;
            yield return Bn;
            if (EcaDw is not null) { yield return EcaDw; yield return EcaPw!; }
            yield return Projection;
        }
    }

    public Tensor Forward(Tape tape, Tensor x)
    {
        var p = PrimaryPw.Forward(tape, PrimaryDw.Forward(tape, x));
        var c = Ghost ? Cat!.Forward(tape, p, GhostDw!.Forward(tape, p)) : p;
        var y = Drop.Forward(tape, Act.Forward(tape, Bn.Forward(tape, c)));
        if (EcaDw is not null)
        {
            var s = EcaSigmoid!.Forward(tape, EcaPw!.Forward(tape, EcaDw.Forward(tape, y)));
            y = EcaGate!.Forward(tape, y, s);
        }
        return Residual.Forward(tape, y, Projection.Forward(tape, x));
    }
}

/// <summary>Squeeze-and-excitation: GAP → dense C→C/r → ReLU → dense C/r→C → sigmoid → channel gate.</summary>
public sealed class SeGate
{
    public GlobalAvgPool Pool { get; }
    public Dense Fc1 { get; }
    public Activation Relu { get; }
    public Dense Fc2 { get; }
    public Activation Sigmoid { get; }
    public Mul Gate { get; }

    public SeGate(string name, int channels, int hidden)
    {
        Pool = new GlobalAvgPool(name + ".gap");
        Fc1 = new Dense(name + ".fc1", channels, hidden);
        Relu = new Activation(name + ".relu", ActivationKind.Relu);
        Fc2 = new Dense(name + ".fc2", hidden, channels);
        Sigmoid = new Activation(name + ".sigmoid", ActivationKind.Sigmoid);
        Gate = new Mul(name + ".mul");
    }

    public IEnumerable<Layer> Layers { get { yield return Fc1; yield return Fc2; } }

    public Tensor Forward(Tape tape, Tensor x)
    {
        var s = Sigmoid.Forward(tape, Fc2.Forward(tape, Relu.Forward(tape, Fc1.Forward(tape, Pool.Forward(tape, x)))));
        return Gate.Forward(tape, x, s);
    }
}
