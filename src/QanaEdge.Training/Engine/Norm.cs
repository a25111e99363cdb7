using System.Numerics.Tensors;

namespace QanaEdge.Training.Engine;

/// <summary>
/// Batch normalisation over N·H·W per channel. Training uses batch statistics (biased variance) and
/// updates running statistics with momentum and the unbiased variance, as PyTorch does; evaluation
/// uses the running statistics. Conversion folds it into the preceding convolution.
/// </summary>
public sealed class BatchNorm : Layer
{
    public int Channels { get; }
    public float Epsilon { get; }
    public float Momentum { get; set; } = 0.1f;
    public Parameter Gamma { get; }
    public Parameter Beta { get; }
    public float[] RunningMean { get; }
    public float[] RunningVar { get; }
    public Tensor Output { get; } = new();
    private Tensor _x = null!;
    private readonly float[] _mean, _invStd;
    private readonly double[][] _part1 = new double[Par.MaxChunks][], _part2 = new double[Par.MaxChunks][];
    private readonly float[] _a, _b, _c;

    public BatchNorm(string name, int channels, float epsilon = 1e-5f) : base(name)
    {
        Channels = channels; Epsilon = epsilon;
        Gamma = new Parameter(name + ".gamma", channels) { Decay = false };
        Beta = new Parameter(name + ".beta", channels) { Decay = false };
        Array.Fill(Gamma.Value, 1f);
        RunningMean = new float[channels];
        RunningVar = new float[channels];
        Array.Fill(RunningVar, 1f);
        _mean = new float[channels]; _invStd = new float[channels];
        _a = new float[channels]; _b = new float[channels]; _c = new float[channels];
        for (int i = 0; i < Par.MaxChunks; i++) { _part1[i] = new double[channels]; _part2[i] = new double[channels]; }
    }

    public override IEnumerable<Parameter> Parameters => [Gamma, Beta];

    public Tensor Forward(Tape tape, Tensor x)
    {
        if (x.C != Channels) throw new ArgumentException($"{Name}: expected {Channels} channels");
        _x = x;
        Output.Reshape(x.N, x.H, x.W, x.C);
        Tape.Prepare(Output, tape.Training);
        int c = Channels, rows = x.N * x.H * x.W;
        if (tape.Training)
        {
            // Two passes (mean, then centred squares) in double per chunk for stable statistics.
            ChannelSums(x.Data, null);
            for (int k = 0; k < c; k++) { double s = 0; for (int i = 0; i < Par.ChunkCount(x.N); i++) s += _part1[i][k]; _mean[k] = (float)(s / rows); }
            double[] var = new double[c];
            ChannelSums(x.Data, _mean);
            for (int k = 0; k < c; k++)
            {
                double s = 0; for (int i = 0; i < Par.ChunkCount(x.N); i++) s += _part2[i][k];
                var[k] = s / rows;
                _invStd[k] = (float)(1.0 / Math.Sqrt(var[k] + Epsilon));
                RunningMean[k] = (1 - Momentum) * RunningMean[k] + Momentum * _mean[k];
                double unbiased = rows > 1 ? var[k] * rows / (rows - 1) : var[k];
                RunningVar[k] = (float)((1 - Momentum) * RunningVar[k] + Momentum * unbiased);
            }
        }
        else
            for (int k = 0; k < c; k++) { _mean[k] = RunningMean[k]; _invStd[k] = 1f / MathF.Sqrt(RunningVar[k] + Epsilon); }
        // y = a·x + b with a = γ/σ, b = β − a·μ.
        for (int k = 0; k < c; k++) { _a[k] = Gamma.Value[k] * _invStd[k]; _b[k] = Beta.Value[k] - _a[k] * _mean[k]; }
        int hw = x.H * x.W;
        Par.For(x.N, (chunk, s, e) =>
        {
            var xs = x.Data.AsSpan(s * hw * c, (e - s) * hw * c);
            var ys = Output.Data.AsSpan(s * hw * c, (e - s) * hw * c);
            for (int r = 0; r < (e - s) * hw; r++)
            {
                var yr = ys.Slice(r * c, c);
                TensorPrimitives.FusedMultiplyAdd(xs.Slice(r * c, c), _a, _b, yr);
            }
        });
        tape.Record(this);
        return Output;
    }

    // part1[chunk][k] = Σ x (mean == null) or part2[chunk][k] = Σ (x − mean)² per chunk.
    private void ChannelSums(float[] data, float[]? mean)
    {
        int c = Channels, hw = _x.H * _x.W;
        Par.For(_x.N, (chunk, s, e) =>
        {
            var acc = mean is null ? _part1[chunk] : _part2[chunk];
            Array.Clear(acc);
            Span<float> row = stackalloc float[c];
            Span<float> part = stackalloc float[c];
            // Float partial sums per block of 256 rows, double across blocks.
            for (int r0 = s * hw; r0 < e * hw; r0 += 256)
            {
                part.Clear();
                int r1 = Math.Min(r0 + 256, e * hw);
                for (int r = r0; r < r1; r++)
                {
                    var xr = data.AsSpan(r * c, c);
                    if (mean is null) Kernels.AddInPlace(part, xr);
                    else { TensorPrimitives.Subtract(xr, mean, row); Kernels.MulAddInPlace(part, row, row); }
                }
                for (int k = 0; k < c; k++) acc[k] += part[k];
            }
        });
    }

    public override void Backward()
    {
        var x = _x;
        int c = Channels, hw = x.H * x.W, rows = x.N * hw;
        int chunks = Par.ChunkCount(x.N);
        // Σ dy and Σ dy·x̂ per channel, per chunk.
        Par.For(x.N, (chunk, s, e) =>
        {
            var s1 = _part1[chunk]; var s2 = _part2[chunk];
            Array.Clear(s1); Array.Clear(s2);
            Span<float> xhat = stackalloc float[c];
            Span<float> p1 = stackalloc float[c];
            Span<float> p2 = stackalloc float[c];
            for (int r0 = s * hw; r0 < e * hw; r0 += 256)
            {
                p1.Clear(); p2.Clear();
                int r1 = Math.Min(r0 + 256, e * hw);
                for (int r = r0; r < r1; r++)
                {
                    var dy = Output.Grad.AsSpan(r * c, c);
                    TensorPrimitives.Subtract(x.Data.AsSpan(r * c, c), _mean, xhat);
                    TensorPrimitives.Multiply(xhat, _invStd, xhat);
                    Kernels.AddInPlace(p1, dy);
                    Kernels.MulAddInPlace(p2, dy, xhat);
                }
                for (int k = 0; k < c; k++) { s1[k] += p1[k]; s2[k] += p2[k]; }
            }
        });
        for (int k = 0; k < c; k++)
        {
            double sdy = 0, sdyx = 0;
            for (int i = 0; i < chunks; i++) { sdy += _part1[i][k]; sdyx += _part2[i][k]; }
            Beta.Grad[k] += (float)sdy;
            Gamma.Grad[k] += (float)sdyx;
            // dx = γ/σ · (dy − mean(dy) − x̂·mean(dy·x̂)) = a·dy + b'·x + c'   (per channel constants)
            float a = Gamma.Value[k] * _invStd[k];
            float mdy = (float)(sdy / rows), mdyx = (float)(sdyx / rows);
            _a[k] = a;
            _b[k] = -a * mdyx * _invStd[k];                 // coefficient of x
            _c[k] = -a * mdy + a * mdyx * _invStd[k] * _mean[k]; // constant
        }
        if (!x.RequiresGrad) return;
        Par.For(x.N, (chunk, s, e) =>
        {
            Span<float> t = stackalloc float[c];
            for (int r = s * hw; r < e * hw; r++)
            {
                var dx = x.Grad.AsSpan(r * c, c);
                TensorPrimitives.FusedMultiplyAdd(Output.Grad.AsSpan(r * c, c), _a, _c, t);
                TensorPrimitives.FusedMultiplyAdd(x.Data.AsSpan(r * c, c), _b, t, t);
                Kernels.AddInPlace(dx, t);
            }
        });
    }
}
