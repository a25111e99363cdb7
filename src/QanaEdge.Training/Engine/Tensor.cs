namespace QanaEdge.Training.Engine;

/// <summary>
/// A float32 activation batch in NHWC layout (flat tensors use H = W = 1) with its gradient.
/// Buffers grow but never shrink, so one tensor object is reused from step to step without allocation.
/// </summary>
public sealed class Tensor
{
    public int N { get; private set; }
    public int H { get; private set; }
    public int W { get; private set; }
    public int C { get; private set; }
    public float[] Data { get; private set; } = [];
    public float[] Grad { get; private set; } = [];
    /// <summary>False for the network input: layers then skip the gradient with respect to it.</summary>
    public bool RequiresGrad { get; set; } = true;

    public int PerSample => H * W * C;
    public int Length => N * H * W * C;
    public int Spatial => H * W;

    public Tensor() { }

    public Tensor(int n, int h, int w, int c) => Reshape(n, h, w, c);

    /// <summary>Sets the shape, growing the buffers when needed (contents are then undefined).</summary>
    public Tensor Reshape(int n, int h, int w, int c)
    {
        if (n <= 0 || h <= 0 || w <= 0 || c <= 0) throw new ArgumentException($"bad tensor shape {n}x{h}x{w}x{c}");
        N = n; H = h; W = w; C = c;
        int len = n * h * w * c;
        if (Data.Length < len) Data = new float[len];
        return this;
    }

    /// <summary>Makes this tensor a view of <paramref name="source"/>'s buffers with another shape (flatten).</summary>
    internal void ViewOf(Tensor source, int h, int w, int c)
    {
        if (h * w * c != source.PerSample) throw new ArgumentException("view must keep the element count");
        N = source.N; H = h; W = w; C = c;
        Data = source.Data; Grad = source.Grad; RequiresGrad = source.RequiresGrad;
    }

    public Span<float> Sample(int n) => Data.AsSpan(n * PerSample, PerSample);
    public Span<float> SampleGrad(int n) => Grad.AsSpan(n * PerSample, PerSample);
    /// <summary>Zeroes the gradient, allocating it on first use (inference never allocates gradients).</summary>
    public void ZeroGrad()
    {
        if (Grad.Length < Length) Grad = new float[Data.Length];
        else Array.Clear(Grad, 0, Length);
    }

    public override string ToString() => $"[{N}x{H}x{W}x{C}]";
}

/// <summary>
/// A trainable parameter. Gradients from parallel workers land in per-chunk buffers and are summed
/// in a fixed order, so a step is bit-for-bit deterministic whatever the thread scheduling.
/// </summary>
public sealed class Parameter
{
    public string Name { get; }
    public int[] Shape { get; }
    public float[] Value { get; }
    public float[] Grad { get; }
    /// <summary>Weight decay applies (weights yes; biases and BN affine parameters no).</summary>
    public bool Decay { get; init; } = true;
    private float[][] _chunkGrads = [];

    public Parameter(string name, params int[] shape)
    {
        Name = name;
        Shape = shape;
        int len = 1;
        foreach (int s in shape) len *= s;
        Value = new float[len];
        Grad = new float[len];
    }

    public int Length => Value.Length;

    /// <summary>The gradient buffer of parallel chunk <paramref name="chunk"/> (zeroed after each reduction).</summary>
    public float[] ChunkGrad(int chunk) => _chunkGrads[chunk];

    internal void EnsureChunks(int chunks)
    {
        if (_chunkGrads.Length >= chunks) return;
        var old = _chunkGrads;
        _chunkGrads = new float[chunks][];
        for (int i = 0; i < chunks; i++) _chunkGrads[i] = i < old.Length ? old[i] : new float[Value.Length];
    }

    /// <summary>Grad += Σ chunk grads (in chunk order); chunk buffers are cleared.</summary>
    internal void ReduceChunks(int chunks)
    {
        for (int i = 0; i < chunks; i++)
        {
            System.Numerics.Tensors.TensorPrimitives.Add(Grad, _chunkGrads[i], Grad);
            Array.Clear(_chunkGrads[i]);
        }
    }

    public void ZeroGrad() => Array.Clear(Grad);
}
