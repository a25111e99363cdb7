using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;

namespace QanaEdge.Training.Engine;

/// <summary>Point-wise activations. ReLU6 is the bounded activation conversion needs; ReLU serves SE.</summary>
public enum ActivationKind { Relu, Relu6, Sigmoid }

public sealed class Activation : Layer
{
    public ActivationKind Kind { get; }
    public Tensor Output { get; } = new();
    private Tensor _x = null!;

    public Activation(string name, ActivationKind kind) : base(name) => Kind = kind;

    public Tensor Forward(Tape tape, Tensor x)
    {
        _x = x;
        Output.Reshape(x.N, x.H, x.W, x.C);
        Tape.Prepare(Output, tape.Training);
        Par.For(x.N, (chunk, s, e) =>
        {
            int ps = x.PerSample;
            var xs = x.Data.AsSpan(s * ps, (e - s) * ps);
            var ys = Output.Data.AsSpan(s * ps, (e - s) * ps);
            switch (Kind)
            {
                case ActivationKind.Relu: TensorPrimitives.Max(xs, 0f, ys); break;
                case ActivationKind.Relu6: TensorPrimitives.Min(xs, 6f, ys); TensorPrimitives.Max(ys, 0f, ys); break;
                default: TensorPrimitives.Sigmoid(xs, ys); break;
            }
        });
        tape.Record(this);
        return Output;
    }

    public override void Backward()
    {
        var x = _x;
        if (!x.RequiresGrad) return;
        Par.For(x.N, (chunk, s, e) =>
        {
            int ps = x.PerSample, off = s * ps, len = (e - s) * ps;
            var xs = x.Data.AsSpan(off, len);
            var ys = Output.Data.AsSpan(off, len);
            var dy = Output.Grad.AsSpan(off, len);
            var dx = x.Grad.AsSpan(off, len);
            switch (Kind)
            {
                case ActivationKind.Relu: MaskedAdd(dx, dy, xs, 0f, float.PositiveInfinity); break;
                case ActivationKind.Relu6: MaskedAdd(dx, dy, xs, 0f, 6f); break;
                default:
                    for (int i = 0; i < len; i++) { float y = ys[i]; dx[i] += dy[i] * y * (1f - y); }
                    break;
            }
        });
    }

    // dx += dy where lo < x < hi (the derivative of a clamp; 0 at and beyond the kinks, as PyTorch's hardtanh/relu).
    internal static void MaskedAdd(Span<float> dx, ReadOnlySpan<float> dy, ReadOnlySpan<float> x, float lo, float hi)
    {
        int n = dx.Length, i = 0;
        ref float rdx = ref MemoryMarshal.GetReference(dx);
        ref float rdy = ref MemoryMarshal.GetReference(dy);
        ref float rx = ref MemoryMarshal.GetReference(x);
        if (Vector.IsHardwareAccelerated)
        {
            var vlo = new Vector<float>(lo); var vhi = new Vector<float>(hi);
            for (; i + Vector<float>.Count <= n; i += Vector<float>.Count)
            {
                var xv = Vector.LoadUnsafe(ref rx, (nuint)i);
                Vector<int> inside = Vector.GreaterThan(xv, vlo) & Vector.LessThan(xv, vhi);
                (Vector.LoadUnsafe(ref rdx, (nuint)i) + Vector.ConditionalSelect(inside, Vector.LoadUnsafe(ref rdy, (nuint)i), Vector<float>.Zero))
                    .StoreUnsafe(ref rdx, (nuint)i);
            }
        }
        for (; i < n; i++) if (x[i] > lo && x[i] < hi) dx[i] += dy[i];
    }
}

/// <summary>Element-wise sum of two same-shape tensors (the residual).</summary>
public sealed class Add : Layer
{
    public Tensor Output { get; } = new();
    private Tensor _a = null!, _b = null!;
    public Add(string name) : base(name) { }

    public Tensor Forward(Tape tape, Tensor a, Tensor b)
    {
        if (a.N != b.N || a.H != b.H || a.W != b.W || a.C != b.C) throw new ArgumentException($"{Name}: shape mismatch {a} vs {b}");
        _a = a; _b = b;
        Output.Reshape(a.N, a.H, a.W, a.C);
        Tape.Prepare(Output, tape.Training);
        TensorPrimitives.Add(a.Data.AsSpan(0, a.Length), b.Data.AsSpan(0, b.Length), Output.Data.AsSpan(0, a.Length));
        tape.Record(this);
        return Output;
    }

    public override void Backward()
    {
        int len = Output.Length;
        var dy = Output.Grad.AsSpan(0, len);
        if (_a.RequiresGrad) TensorPrimitives.Add(_a.Grad.AsSpan(0, len), dy, _a.Grad.AsSpan(0, len));
        if (_b.RequiresGrad) TensorPrimitives.Add(_b.Grad.AsSpan(0, len), dy, _b.Grad.AsSpan(0, len));
    }
}

/// <summary>
/// Gate: y = x · g with g broadcast from [N,1,1,C] (channel, SE), [N,H,W,1] (spatial) or [N,H,W,C] (SA-ECA).
/// </summary>
public sealed class Mul : Layer
{
    public Tensor Output { get; } = new();
    private Tensor _x = null!, _g = null!;
    public Mul(string name) : base(name) { }

    public Tensor Forward(Tape tape, Tensor x, Tensor g)
    {
        bool ok = g.N == x.N && ((g.H == x.H && g.W == x.W && (g.C == x.C || g.C == 1)) || (g.H == 1 && g.W == 1 && g.C == x.C));
        if (!ok) throw new ArgumentException($"{Name}: cannot broadcast gate {g} over {x}");
        _x = x; _g = g;
        Output.Reshape(x.N, x.H, x.W, x.C);
        Tape.Prepare(Output, tape.Training);
        Par.For(x.N, (chunk, s, e) =>
        {
            for (int n = s; n < e; n++)
            {
                var xs = x.Sample(n); var gs = g.Sample(n); var ys = Output.Sample(n);
                if (g.PerSample == x.PerSample) TensorPrimitives.Multiply(xs, gs, ys);
                else if (g.C == x.C) for (int p = 0; p < x.Spatial; p++) TensorPrimitives.Multiply(xs.Slice(p * x.C, x.C), gs, ys.Slice(p * x.C, x.C));
                else for (int p = 0; p < x.Spatial; p++) TensorPrimitives.Multiply(xs.Slice(p * x.C, x.C), gs[p], ys.Slice(p * x.C, x.C));
            }
        });
        tape.Record(this);
        return Output;
    }

    public override void Backward()
    {
        var x = _x; var g = _g;
        Par.For(x.N, (chunk, s, e) =>
        {
            for (int n = s; n < e; n++)
            {
                var xs = x.Sample(n); var gs = g.Sample(n); var dy = Output.SampleGrad(n);
                var dx = x.RequiresGrad ? x.SampleGrad(n) : default;
                var dg = g.RequiresGrad ? g.SampleGrad(n) : default;
                if (g.PerSample == x.PerSample)
                {
                    if (x.RequiresGrad) Kernels.MulAddInPlace(dx, dy, gs);
                    if (g.RequiresGrad) Kernels.MulAddInPlace(dg, dy, xs);
                }
                else if (g.C == x.C)
                    for (int p = 0; p < x.Spatial; p++)
                    {
                        var dyp = dy.Slice(p * x.C, x.C);
                        if (x.RequiresGrad) Kernels.MulAddInPlace(dx.Slice(p * x.C, x.C), dyp, gs);
                        if (g.RequiresGrad) Kernels.MulAddInPlace(dg, dyp, xs.Slice(p * x.C, x.C));
                    }
                else
                    for (int p = 0; p < x.Spatial; p++)
                    {
                        var dyp = dy.Slice(p * x.C, x.C);
                        if (x.RequiresGrad) TensorPrimitives.MultiplyAdd(dyp, gs[p], dx.Slice(p * x.C, x.C), dx.Slice(p * x.C, x.C));
                        if (g.RequiresGrad) dg[p] += TensorPrimitives.Dot(dyp, xs.Slice(p * x.C, x.C));
                    }
            }
        });
    }
}

/// <summary>Channel concatenation of two tensors with the same N, H, W.</summary>
public sealed class Concat : Layer
{
    public Tensor Output { get; } = new();
    private Tensor _a = null!, _b = null!;
    public Concat(string name) : base(name) { }

    public Tensor Forward(Tape tape, Tensor a, Tensor b)
    {
        if (a.N != b.N || a.H != b.H || a.W != b.W) throw new ArgumentException($"{Name}: shape mismatch {a} vs {b}");
        _a = a; _b = b;
        Output.Reshape(a.N, a.H, a.W, a.C + b.C);
        Tape.Prepare(Output, tape.Training);
        int ca = a.C, cb = b.C, c = ca + cb, rows = a.N * a.H * a.W;
        for (int r = 0; r < rows; r++)
        {
            a.Data.AsSpan(r * ca, ca).CopyTo(Output.Data.AsSpan(r * c, ca));
            b.Data.AsSpan(r * cb, cb).CopyTo(Output.Data.AsSpan(r * c + ca, cb));
        }
        tape.Record(this);
        return Output;
    }

    public override void Backward()
    {
        int ca = _a.C, cb = _b.C, c = ca + cb, rows = _a.N * _a.H * _a.W;
        for (int r = 0; r < rows; r++)
        {
            if (_a.RequiresGrad) Kernels.AddInPlace(_a.Grad.AsSpan(r * ca, ca), Output.Grad.AsSpan(r * c, ca));
            if (_b.RequiresGrad) Kernels.AddInPlace(_b.Grad.AsSpan(r * cb, cb), Output.Grad.AsSpan(r * c + ca, cb));
        }
    }
}

/// <summary>Global average pool: [N,H,W,C] → [N,1,1,C].</summary>
public sealed class GlobalAvgPool : Layer
{
    public Tensor Output { get; } = new();
    private Tensor _x = null!;
    public GlobalAvgPool(string name) : base(name) { }

    public Tensor Forward(Tape tape, Tensor x)
    {
        _x = x;
        Output.Reshape(x.N, 1, 1, x.C);
        Tape.Prepare(Output, tape.Training);
        float inv = 1f / x.Spatial;
        for (int n = 0; n < x.N; n++)
        {
            var y = Output.Sample(n);
            y.Clear();
            Kernels.SumRows(x.Sample(n), y, x.Spatial, x.C);
            TensorPrimitives.Multiply(y, inv, y);
        }
        tape.Record(this);
        return Output;
    }

    public override void Backward()
    {
        var x = _x;
        if (!x.RequiresGrad) return;
        float inv = 1f / x.Spatial;
        for (int n = 0; n < x.N; n++)
        {
            var dy = Output.SampleGrad(n); var dx = x.SampleGrad(n);
            for (int p = 0; p < x.Spatial; p++)
                TensorPrimitives.MultiplyAdd(dy, inv, dx.Slice(p * x.C, x.C), dx.Slice(p * x.C, x.C));
        }
    }
}

/// <summary>
/// Inverted dropout. Masks come from a counter-based hash of (seed, step, element), so they are
/// reproducible for a seed and independent of thread scheduling.
/// </summary>
public sealed class Dropout : Layer
{
    public float Rate { get; set; }
    public ulong Seed { get; set; }
    public Tensor Output { get; } = new();
    private Tensor _x = null!;
    private float[] _mask = [];
    private bool _active;

    public Dropout(string name, float rate, ulong seed) : base(name) { Rate = rate; Seed = seed; }

    public Tensor Forward(Tape tape, Tensor x)
    {
        _x = x;
        Output.Reshape(x.N, x.H, x.W, x.C);
        Tape.Prepare(Output, tape.Training);
        int len = x.Length;
        _active = tape.Training && Rate > 0;
        if (!_active) { x.Data.AsSpan(0, len).CopyTo(Output.Data); tape.Record(this); return Output; }
        if (_mask.Length < len) _mask = new float[len];
        float keep = 1f / (1f - Rate);
        ulong key = Mix(Seed ^ Mix(tape.Step + 0x9E3779B97F4A7C15UL));
        uint threshold = (uint)(Rate * 65536);
        Par.For(x.N, (chunk, s, e) =>
        {
            int ps = x.PerSample;
            // One 64-bit hash yields four 16-bit uniforms; chunk starts are multiples of 4 only by luck, so
            // the hash index is the element index / 4 and the lane its remainder: masks do not depend on chunking.
            for (int i = s * ps; i < e * ps; i++)
            {
                ulong hsh = Mix(key + (ulong)(i >> 2));
                _mask[i] = (uint)((hsh >> ((i & 3) * 16)) & 0xFFFF) >= threshold ? keep : 0f;
            }
            TensorPrimitives.Multiply(x.Data.AsSpan(s * ps, (e - s) * ps), _mask.AsSpan(s * ps, (e - s) * ps), Output.Data.AsSpan(s * ps, (e - s) * ps));
        });
        tape.Record(this);
        return Output;
    }

    public override void Backward()
    {
        if (!_x.RequiresGrad) return;
        int len = Output.Length;
        if (_active) Kernels.MulAddInPlace(_x.Grad.AsSpan(0, len), Output.Grad.AsSpan(0, len), _mask.AsSpan(0, len));
        else Kernels.AddInPlace(_x.Grad.AsSpan(0, len), Output.Grad.AsSpan(0, len));
    }

    /// <summary>SplitMix64 finaliser.</summary>
    internal static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}

/// <summary>Flatten [N,H,W,C] → [N,1,1,H·W·C]: a view of the same buffers (HWC order, as the IR's Reshape).</summary>
public sealed class Flatten : Layer
{
    public Tensor Output { get; } = new();
    public Flatten(string name) : base(name) { }

    public Tensor Forward(Tape tape, Tensor x)
    {
        if (tape.Training && x.Grad.Length < x.Length) x.ZeroGrad();
        Output.ViewOf(x, 1, 1, x.PerSample);
        return Output; // nothing to record: gradients already land in the shared buffer
    }

    public override void Backward() { }
}
