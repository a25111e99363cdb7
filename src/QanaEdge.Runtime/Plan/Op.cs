using QanaEdge.Model.Graph;

namespace QanaEdge.Runtime.Plan;

/// <summary>
/// One prepared node: everything eval needs (multipliers, shifts, folded biases, geometry, kernel choice)
/// computed once from the graph. <see cref="Eval"/> only dispatches to a kernel.
/// </summary>
internal abstract class Op
{
    public required int NodeIndex { get; init; }
    public required Node Node { get; init; }
    public required int[] InputIndices { get; init; }
    public required TensorSpec[] Inputs { get; init; }
    public required int OutputIndex { get; init; }
    public required TensorSpec Output { get; init; }
    /// <summary>Fused output clamp, already intersected with the int8 range.</summary>
    public required int Lo { get; init; }
    public required int Hi { get; init; }
    /// <summary>Kernel chosen at prepare time: vectorised (bit-exact) or the reference loop nest.</summary>
    public bool Optimized { get; set; }

    /// <summary>Name of the kernel that runs, for the per-layer table and benchmarks.</summary>
    public abstract string KernelName { get; }

    /// <summary>Multiply-accumulates per run (0 for data movement).</summary>
    public virtual long Macs => 0;

    /// <summary>False while an op has only its reference kernel.</summary>
    public virtual bool HasOptimized => true;

    public void Eval(ExecState s)
    {
        if (Optimized) EvalOptimized(s); else EvalReference(s);
    }

    public abstract void EvalReference(ExecState s);
    public abstract void EvalOptimized(ExecState s);

    /// <summary>Scratch this op needs in the shared buffers (int16 elements, int32 elements).</summary>
    public virtual (int Shorts, int Ints) Scratch => (0, 0);

    /// <summary>Scratch bytes this op needs.</summary>
    public virtual int ScratchBytes => 0;

    public Scratch Buffers = null!;
}

/// <summary>Scratch memory shared by all ops of one engine, sized at prepare time.</summary>
internal sealed class Scratch(int shorts, int ints, int bytes)
{
    public readonly sbyte[] Bytes = new sbyte[bytes + 64];
    public readonly short[] Shorts = new short[Math.Max(shorts, 64)];
    public readonly int[] Ints = new int[Math.Max(ints, 64)];
}
