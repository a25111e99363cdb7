using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace QanaEdge.Training.Engine;

/// <summary>TensorFlow-style SAME padding, as the integer engine pads: out = ceil(in/stride), the extra row/column at the bottom/right.</summary>
public static class SamePadding
{
    public static int OutSize(int input, int stride) => (input + stride - 1) / stride;

    public static int PadBefore(int input, int kernel, int stride)
    {
        int output = OutSize(input, stride);
        int total = Math.Max((output - 1) * stride + kernel - input, 0);
        return total / 2;
    }
}

/// <summary>
/// Dense 2-D convolution with SAME padding (also the 1×1 pointwise case, which skips im2col).
/// Weight layout [Kh·Kw·Cin, Cout] ("KIO") so that one sample is a single GEMM
/// out[Ho·Wo, Cout] = im2col(x)[Ho·Wo, Kh·Kw·Cin] · W; conversion transposes to the IR's [Cout,Kh,Kw,Cin].
/// </summary>
public sealed class Conv2d : Layer
{
    public int Kernel { get; }
    public int Stride { get; }
    public int InChannels { get; }
    public int OutChannels { get; }
    public Parameter Weight { get; }
    public Parameter? Bias { get; }
    public Tensor Output { get; } = new();
    private Tensor _x = null!;
    private float[][] _col = new float[Par.MaxChunks][];
    private float[][] _dcol = new float[Par.MaxChunks][];
    private float[] _wt = [];

    private bool Pointwise => Kernel == 1 && Stride == 1;

    public Conv2d(string name, int cin, int cout, int kernel, int stride, bool bias) : base(name)
    {
        InChannels = cin; OutChannels = cout; Kernel = kernel; Stride = stride;
        Weight = new Parameter(name + ".w", kernel * kernel * cin, cout);
        if (bias) Bias = new Parameter(name + ".b", cout) { Decay = false };
    }

    public override IEnumerable<Parameter> Parameters => Bias is null ? [Weight] : [Weight, Bias];

    public Tensor Forward(Tape tape, Tensor x)
    {
        if (x.C != InChannels) throw new ArgumentException($"{Name}: expected {InChannels} channels, got {x.C}");
        _x = x;
        int ho = SamePadding.OutSize(x.H, Stride), wo = SamePadding.OutSize(x.W, Stride);
        Output.Reshape(x.N, ho, wo, OutChannels);
        Tape.Prepare(Output, tape.Training);
        int m = ho * wo, kk = Kernel * Kernel * InChannels;
        Par.For(x.N, (chunk, s, e) =>
        {
            float[] col = Pointwise ? [] : Scratch(_col, chunk, m * kk);
            for (int n = s; n < e; n++)
            {
                var y = Output.Sample(n);
                if (Bias is null) y.Clear();
                else for (int p = 0; p < m; p++) Bias.Value.CopyTo(y.Slice(p * OutChannels, OutChannels));
                if (Pointwise) Gemm.MatMulAcc(x.Sample(n), Weight.Value, y, m, kk, OutChannels);
                else
                {
                    Im2Col(x.Sample(n), x.H, x.W, col, ho, wo);
                    Gemm.MatMulAcc(col, Weight.Value, y, m, kk, OutChannels);
                }
            }
        });
        tape.Record(this);
        return Output;
    }

    public override void Backward()
    {
        var x = _x;
        int ho = Output.H, wo = Output.W, m = ho * wo, kk = Kernel * Kernel * InChannels;
        int chunks = Par.ChunkCount(x.N);
        Weight.EnsureChunks(chunks); Bias?.EnsureChunks(chunks);
        if (_wt.Length < Weight.Length) _wt = new float[Weight.Length];
        Gemm.Transpose(Weight.Value, _wt, kk, OutChannels); // [Cout, KK]
        Par.For(x.N, (chunk, s, e) =>
        {
            float[] dw = Weight.ChunkGrad(chunk);
            float[]? db = Bias?.ChunkGrad(chunk);
            float[] col = Pointwise ? [] : Scratch(_col, chunk, m * kk);
            float[] dcol = Pointwise || !x.RequiresGrad ? [] : Scratch(_dcol, chunk, m * kk);
            for (int n = s; n < e; n++)
            {
                var dy = Output.SampleGrad(n);
                if (db is not null) Kernels.SumRows(dy, db, m, OutChannels);
                if (Pointwise)
                {
                    Gemm.MatMulAtBAcc(x.Sample(n), dy, dw, m, kk, OutChannels);
                    if (x.RequiresGrad) Gemm.MatMulAcc(dy, _wt, x.SampleGrad(n), m, OutChannels, kk);
                }
                else
                {
                    Im2Col(x.Sample(n), x.H, x.W, col, ho, wo);
                    Gemm.MatMulAtBAcc(col, dy, dw, m, kk, OutChannels);
                    if (x.RequiresGrad)
                    {
                        Array.Clear(dcol, 0, m * kk);
                        Gemm.MatMulAcc(dy, _wt, dcol, m, OutChannels, kk);
                        Col2ImAdd(dcol, x.H, x.W, x.SampleGrad(n), ho, wo);
                    }
                }
            }
        });
        Weight.ReduceChunks(chunks); Bias?.ReduceChunks(chunks);
    }

    internal static float[] Scratch(float[][] pool, int chunk, int length)
    {
        if (pool[chunk] is null || pool[chunk].Length < length) pool[chunk] = new float[length];
        return pool[chunk];
    }

    // col[(oy*wo+ox), (ky*K+kx)*Cin + ci] = x[iy, ix, ci] (0 outside).
    private void Im2Col(ReadOnlySpan<float> x, int h, int w, Span<float> col, int ho, int wo)
    {
        int k = Kernel, cin = InChannels, kk = k * k * cin;
        int pt = SamePadding.PadBefore(h, k, Stride), pl = SamePadding.PadBefore(w, k, Stride);
        for (int oy = 0; oy < ho; oy++)
            for (int ox = 0; ox < wo; ox++)
            {
                var row = col.Slice((oy * wo + ox) * kk, kk);
                for (int ky = 0; ky < k; ky++)
                {
                    int iy = oy * Stride - pt + ky;
                    for (int kx = 0; kx < k; kx++)
                    {
                        int ix = ox * Stride - pl + kx;
                        var dst = row.Slice((ky * k + kx) * cin, cin);
                        if (iy < 0 || iy >= h || ix < 0 || ix >= w) dst.Clear();
                        else x.Slice((iy * w + ix) * cin, cin).CopyTo(dst);
                    }
                }
            }
    }

    private void Col2ImAdd(ReadOnlySpan<float> col, int h, int w, Span<float> dx, int ho, int wo)
    {
        int k = Kernel, cin = InChannels, kk = k * k * cin;
        int pt = SamePadding.PadBefore(h, k, Stride), pl = SamePadding.PadBefore(w, k, Stride);
        for (int oy = 0; oy < ho; oy++)
            for (int ox = 0; ox < wo; ox++)
            {
                var row = col.Slice((oy * wo + ox) * kk, kk);
                for (int ky = 0; ky < k; ky++)
                {
                    int iy = oy * Stride - pt + ky;
                    if (iy < 0 || iy >= h) continue;
                    for (int kx = 0; kx < k; kx++)
                    {
                        int ix = ox * Stride - pl + kx;
                        if (ix < 0 || ix >= w) continue;
                        Kernels.AddInPlace(dx.Slice((iy * w + ix) * cin, cin), row.Slice((ky * k + kx) * cin, cin));
                    }
                }
            }
    }
}

/// <summary>Depthwise 2-D convolution (depth multiplier 1), SAME padding. Weight [Kh, Kw, C] as in the IR.</summary>
public sealed class DepthwiseConv2d : Layer
{
    public int Kernel { get; }
    public int Stride { get; }
    public int Channels { get; }
    public Parameter Weight { get; }
    public Parameter? Bias { get; }
    public Tensor Output { get; } = new();
    private Tensor _x = null!;

    public DepthwiseConv2d(string name, int channels, int kernel, int stride, bool bias) : base(name)
    {
        Channels = channels; Kernel = kernel; Stride = stride;
        Weight = new Parameter(name + ".w", kernel, kernel, channels);
        if (bias) Bias = new Parameter(name + ".b", channels) { Decay = false };
    }

    public override IEnumerable<Parameter> Parameters => Bias is null ? [Weight] : [Weight, Bias];

    public Tensor Forward(Tape tape, Tensor x)
    {
        if (x.C != Channels) throw new ArgumentException($"{Name}: expected {Channels} channels, got {x.C}");
        _x = x;
        int ho = SamePadding.OutSize(x.H, Stride), wo = SamePadding.OutSize(x.W, Stride);
        Output.Reshape(x.N, ho, wo, Channels);
        Tape.Prepare(Output, tape.Training);
        Par.For(x.N, (chunk, s, e) =>
        {
            for (int n = s; n < e; n++) ForwardSample(x.Sample(n), x.H, x.W, Output.Sample(n), ho, wo);
        });
        tape.Record(this);
        return Output;
    }

    private void ForwardSample(ReadOnlySpan<float> x, int h, int w, Span<float> y, int ho, int wo)
    {
        int k = Kernel, c = Channels, st = Stride;
        int pt = SamePadding.PadBefore(h, k, st), pl = SamePadding.PadBefore(w, k, st);
        ref float rx = ref MemoryMarshal.GetReference(x);
        ref float rw = ref MemoryMarshal.GetReference(Weight.Value.AsSpan());
        ref float ry = ref MemoryMarshal.GetReference(y);
        int lanes = Vector<float>.Count, cv = Vector.IsHardwareAccelerated ? c - c % lanes : 0;
        for (int oy = 0; oy < ho; oy++)
        {
            int ky0 = Math.Max(0, pt - oy * st), ky1 = Math.Min(k, h + pt - oy * st);
            for (int ox = 0; ox < wo; ox++)
            {
                int kx0 = Math.Max(0, pl - ox * st), kx1 = Math.Min(k, w + pl - ox * st);
                ref float acc = ref Unsafe.Add(ref ry, (oy * wo + ox) * c);
                int ch = 0;
                for (; ch < cv; ch += lanes)
                {
                    var v = Bias is null ? Vector<float>.Zero : new Vector<float>(Bias.Value.AsSpan(ch, lanes));
                    for (int ky = ky0; ky < ky1; ky++)
                    {
                        int rowOff = ((oy * st - pt + ky) * w + ox * st - pl) * c + ch;
                        for (int kx = kx0; kx < kx1; kx++)
                            v = Kernels.MulAdd(Vector.LoadUnsafe(ref rx, (nuint)(rowOff + kx * c)),
                                Vector.LoadUnsafe(ref rw, (nuint)((ky * k + kx) * c + ch)), v);
                    }
                    v.StoreUnsafe(ref acc, (nuint)ch);
                }
                for (; ch < c; ch++)
                {
                    float v = Bias?.Value[ch] ?? 0f;
                    for (int ky = ky0; ky < ky1; ky++)
                        for (int kx = kx0; kx < kx1; kx++)
                            v += x[((oy * st - pt + ky) * w + ox * st - pl + kx) * c + ch] * Weight.Value[(ky * k + kx) * c + ch];
                    Unsafe.Add(ref acc, ch) = v;
                }
            }
        }
    }

    public override void Backward()
    {
        var x = _x;
        int chunks = Par.ChunkCount(x.N);
        Weight.EnsureChunks(chunks); Bias?.EnsureChunks(chunks);
        int k = Kernel, c = Channels, h = x.H, w = x.W, ho = Output.H, wo = Output.W;
        int pt = SamePadding.PadBefore(h, k, Stride), pl = SamePadding.PadBefore(w, k, Stride);
        int lanes = Vector<float>.Count, cv = Vector.IsHardwareAccelerated ? c - c % lanes : 0;
        Par.For(x.N, (chunk, s, e) =>
        {
            float[] dwArr = Weight.ChunkGrad(chunk);
            float[]? db = Bias?.ChunkGrad(chunk);
            ref float rw = ref MemoryMarshal.GetArrayDataReference(Weight.Value);
            ref float rdw = ref MemoryMarshal.GetArrayDataReference(dwArr);
            for (int n = s; n < e; n++)
            {
                ReadOnlySpan<float> xs = x.Sample(n);
                ReadOnlySpan<float> dy = Output.SampleGrad(n);
                Span<float> dxs = x.RequiresGrad ? x.SampleGrad(n) : default;
                ref float rx = ref MemoryMarshal.GetReference(xs);
                ref float rdy = ref MemoryMarshal.GetReference(dy);
                ref float rdx = ref MemoryMarshal.GetReference(dxs);
                if (db is not null) Kernels.SumRows(dy, db, ho * wo, c);
                for (int oy = 0; oy < ho; oy++)
                {
                    int ky0 = Math.Max(0, pt - oy * Stride), ky1 = Math.Min(k, h + pt - oy * Stride);
                    for (int ox = 0; ox < wo; ox++)
                    {
                        int kx0 = Math.Max(0, pl - ox * Stride), kx1 = Math.Min(k, w + pl - ox * Stride);
                        int go = (oy * wo + ox) * c;
                        int ch = 0;
                        for (; ch < cv; ch += lanes)
                        {
                            var g = Vector.LoadUnsafe(ref rdy, (nuint)(go + ch));
                            for (int ky = ky0; ky < ky1; ky++)
                            {
                                int rowOff = ((oy * Stride - pt + ky) * w + ox * Stride - pl) * c + ch;
                                for (int kx = kx0; kx < kx1; kx++)
                                {
                                    nuint off = (nuint)(rowOff + kx * c), tap = (nuint)((ky * k + kx) * c + ch);
                                    Kernels.MulAdd(Vector.LoadUnsafe(ref rx, off), g, Vector.LoadUnsafe(ref rdw, tap)).StoreUnsafe(ref rdw, tap);
                                    if (x.RequiresGrad)
                                        Kernels.MulAdd(Vector.LoadUnsafe(ref rw, tap), g, Vector.LoadUnsafe(ref rdx, off)).StoreUnsafe(ref rdx, off);
                                }
                            }
                        }
                        for (; ch < c; ch++)
                        {
                            float g = dy[go + ch];
                            for (int ky = ky0; ky < ky1; ky++)
                                for (int kx = kx0; kx < kx1; kx++)
                                {
                                    int off = ((oy * Stride - pt + ky) * w + ox * Stride - pl + kx) * c + ch, tap = (ky * k + kx) * c + ch;
                                    dwArr[tap] += xs[off] * g;
                                    if (x.RequiresGrad) dxs[off] += Weight.Value[tap] * g;
                                }
                        }
                    }
                }
            }
        });
        Weight.ReduceChunks(chunks); Bias?.ReduceChunks(chunks);
    }
}

/// <summary>Fully connected layer over each sample's flattened features. Weight [In, Out].</summary>
public sealed class Dense : Layer
{
    public int In { get; }
    public int Out { get; }
    public Parameter Weight { get; }
    public Parameter Bias { get; }
    public Tensor Output { get; } = new();
    private Tensor _x = null!;
    private float[] _wt = [];

    public Dense(string name, int inFeatures, int outFeatures) : base(name)
    {
        In = inFeatures; Out = outFeatures;
        Weight = new Parameter(name + ".w", inFeatures, outFeatures);
        Bias = new Parameter(name + ".b", outFeatures) { Decay = false };
    }

    public override IEnumerable<Parameter> Parameters => [Weight, Bias];

    public Tensor Forward(Tape tape, Tensor x)
    {
        if (x.PerSample != In) throw new ArgumentException($"{Name}: expected {In} features, got {x.PerSample}");
        _x = x;
        Output.Reshape(x.N, 1, 1, Out);
        Tape.Prepare(Output, tape.Training);
        Par.For(x.N, (chunk, s, e) =>
        {
            for (int n = s; n < e; n++) Bias.Value.CopyTo(Output.Sample(n));
            Gemm.MatMulAcc(x.Data.AsSpan(s * In, (e - s) * In), Weight.Value, Output.Data.AsSpan(s * Out, (e - s) * Out), e - s, In, Out);
        });
        tape.Record(this);
        return Output;
    }

    public override void Backward()
    {
        var x = _x;
        int chunks = Par.ChunkCount(x.N);
        Weight.EnsureChunks(chunks); Bias.EnsureChunks(chunks);
        if (_wt.Length < Weight.Length) _wt = new float[Weight.Length];
        Gemm.Transpose(Weight.Value, _wt, In, Out);
        Par.For(x.N, (chunk, s, e) =>
        {
            var dy = Output.Grad.AsSpan(s * Out, (e - s) * Out);
            Kernels.SumRows(dy, Bias.ChunkGrad(chunk), e - s, Out);
            Gemm.MatMulAtBAcc(x.Data.AsSpan(s * In, (e - s) * In), dy, Weight.ChunkGrad(chunk), e - s, In, Out);
            if (x.RequiresGrad) Gemm.MatMulAcc(dy, _wt, x.Grad.AsSpan(s * In, (e - s) * In), e - s, Out, In);
        });
        Weight.ReduceChunks(chunks); Bias.ReduceChunks(chunks);
    }
}
