using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace QanaEdge.Training.Engine;

/// <summary>Small vector helpers over channel rows (C = 7..128 floats), inlined into the layer loops.</summary>
public static class Kernels
{
    /// <summary>acc[i] += a[i] · b[i].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void MulAddInPlace(Span<float> acc, ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        int n = acc.Length, i = 0;
        if (a.Length < n || b.Length < n) throw new ArgumentException("length mismatch");
        ref float r = ref MemoryMarshal.GetReference(acc);
        ref float ra = ref MemoryMarshal.GetReference(a);
        ref float rb = ref MemoryMarshal.GetReference(b);
        if (Vector256.IsHardwareAccelerated)
            for (; i + 8 <= n; i += 8)
                Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref ra, (nuint)i), Vector256.LoadUnsafe(ref rb, (nuint)i),
                    Vector256.LoadUnsafe(ref r, (nuint)i)).StoreUnsafe(ref r, (nuint)i);
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
        if (Vector256.IsHardwareAccelerated)
            for (; i + 8 <= n; i += 8)
                (Vector256.LoadUnsafe(ref r, (nuint)i) + Vector256.LoadUnsafe(ref ra, (nuint)i)).StoreUnsafe(ref r, (nuint)i);
        for (; i < n; i++) Unsafe.Add(ref r, i) += Unsafe.Add(ref ra, i);
    }

    /// <summary>dst[c] += Σ_r m[r, c] over a [rows, cols] matrix.</summary>
    public static void SumRows(ReadOnlySpan<float> m, Span<float> dst, int rows, int cols)
    {
        for (int r = 0; r < rows; r++) AddInPlace(dst[..cols], m.Slice(r * cols, cols));
    }
}
