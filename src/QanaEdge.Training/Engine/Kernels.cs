using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace QanaEdge.Training.Engine;

/// <summary>
/// Small vector helpers over channel rows (C = 7..128 floats), inlined into the layer loops.
/// The training kernels are written on <see cref="Vector{T}"/>, whose width the JIT (or ILC, for the published
/// binary) sets to the widest the machine runs well: 8 floats with AVX2 (also on AVX-512 machines, by .NET's default),
/// 4 with NEON on ARM64 or with SSE on x64. Fixed-width Vector256 code would leave ARM64 on the scalar loops.
/// </summary>
public static class Kernels
{
    /// <summary>Floats per vector of the training kernels.</summary>
    public static int Lanes => Vector<float>.Count;

    /// <summary>
    /// a · b + c, fused where the CPU has an instruction for it (FMA3, ARM64 fmla) and a multiply then an add where
    /// it has not: .NET's exact FusedMultiplyAdd is emulated lane by lane there, slower than the scalar loops.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector<float> MulAdd(Vector<float> a, Vector<float> b, Vector<float> c) => Vector.MultiplyAddEstimate(a, b, c);

    /// <summary>acc[i] += a[i] · b[i].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void MulAddInPlace(Span<float> acc, ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        int n = acc.Length, i = 0;
        if (a.Length < n || b.Length < n) throw new ArgumentException("length mismatch");
        ref float r = ref MemoryMarshal.GetReference(acc);
        ref float ra = ref MemoryMarshal.GetReference(a);
        ref float rb = ref MemoryMarshal.GetReference(b);
        if (Vector.IsHardwareAccelerated)
            for (; i + Vector<float>.Count <= n; i += Vector<float>.Count)
                MulAdd(Vector.LoadUnsafe(ref ra, (nuint)i), Vector.LoadUnsafe(ref rb, (nuint)i),
                    Vector.LoadUnsafe(ref r, (nuint)i)).StoreUnsafe(ref r, (nuint)i);
        for (; i < n; i++) Unsafe.Add(ref r, i) += Unsafe.Add(ref ra, i) * Unsafe.Add(ref rb, i);
    }

    /// <summary>acc[i] += a[i].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void AddInPlace(Span<float> acc, ReadOnlySpan<float> a)
    {
        int n = acc.Length, i = 0;
        if (a.Length < n) throw new ArgumentException("length mismatch");
        ref float r = ref MemoryMarshal.GetReference(acc);
        ref float ra = ref MemoryMarshal.GetReference(a);
        if (Vector.IsHardwareAccelerated)
            for (; i + Vector<float>.Count <= n; i += Vector<float>.Count)
                (Vector.LoadUnsafe(ref r, (nuint)i) + Vector.LoadUnsafe(ref ra, (nuint)i)).StoreUnsafe(ref r, (nuint)i);
        for (; i < n; i++) Unsafe.Add(ref r, i) += Unsafe.Add(ref ra, i);
    }

    /// <summary>dst[c] += Σ_r m[r, c] over a [rows, cols] matrix.</summary>
    public static void SumRows(ReadOnlySpan<float> m, Span<float> dst, int rows, int cols)
    {
        for (int r = 0; r < rows; r++) AddInPlace(dst[..cols], m.Slice(r * cols, cols));
    }
}
