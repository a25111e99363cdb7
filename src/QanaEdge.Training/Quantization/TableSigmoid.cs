using QanaEdge.Training.Engine;

namespace QanaEdge.Training.Quantization;

/// <summary>
/// Sigmoid as the integer graph computes it: once the grids are frozen, the forward pass looks up the
/// same 256-entry table the converter writes (index q_in + 128), so the fake-quantized network and the
/// integer engine agree exactly on every gate; before that (and for calibration) it is the float sigmoid.
/// Backward uses σ'(x) = y(1 − y) of the looked-up value (straight-through for the rounding).
/// </summary>
public sealed class TableSigmoid : Layer
{
    public Tensor Output { get; } = new();
    private Tensor _x = null!;
    private float[]? _table;
    private float _inScale;
    private int _inZeroPoint;

    public TableSigmoid(string name) : base(name) { }

    public void SetTable(ActivationGrid input, sbyte[] table, ActivationGrid output)
    {
        _inScale = (float)input.Scale; _inZeroPoint = input.ZeroPoint;
        _table = table.Select(q => (float)(output.Scale * (q - output.ZeroPoint))).ToArray();
    }

    /// <summary>Back to the float sigmoid (e.g. before recalibrating).</summary>
    public void ClearTable() => _table = null;

    public Tensor Forward(Tape tape, Tensor x)
    {
        _x = x;
        Output.Reshape(x.N, x.H, x.W, x.C);
        Tape.Prepare(Output, tape.Training);
        int len = x.Length;
        var xs = x.Data.AsSpan(0, len);
        var ys = Output.Data.AsSpan(0, len);
        if (_table is null) System.Numerics.Tensors.TensorPrimitives.Sigmoid(xs, ys);
        else
            for (int i = 0; i < len; i++)
            {
                int q = (int)MathF.Round(xs[i] / _inScale, MidpointRounding.AwayFromZero) + _inZeroPoint;
                ys[i] = _table[Math.Clamp(q, -128, 127) + 128];
            }
        tape.Record(this);
        return Output;
    }

    public override void Backward()
    {
        if (!_x.RequiresGrad) return;
        int len = Output.Length;
        var ys = Output.Data.AsSpan(0, len); var dy = Output.Grad.AsSpan(0, len); var dx = _x.Grad.AsSpan(0, len);
        for (int i = 0; i < len; i++) { float y = ys[i]; dx[i] += dy[i] * y * (1f - y); }
    }
}
