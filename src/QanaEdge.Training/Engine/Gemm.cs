using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace QanaEdge.Training.Engine;

/// <summary>
/// Single-threaded float GEMM kernels for the small matrices of a compact CNN (N = 7..128 columns).
/// Row-major everywhere. Register-blocked 4 rows × 2 vectors of <see cref="Vector{T}"/> (8 lanes with AVX2, 4 with
/// NEON or SSE; <see cref="Kernels"/>): on Zen 4 a 512-bit op is two 256-bit halves, so 256-bit blocking with more
/// accumulators is as fast and also covers 24/48/96 channels.
/// The naive loops (<see cref="MatMulAccNaive"/>) are the algorithmic reference used by the tests.
/// </summary>
public static class Gemm
{
    /// <summary>C[M,N] += A[M,K] · B[K,N].</summary>
    public static void MatMulAcc(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> c, int m, int k, int n)
    {
        if (a.Length < m * k || b.Length < k * n || c.Length < m * n) throw new ArgumentException("gemm: buffer too small");
        if (!Vector.IsHardwareAccelerated || n < Vector<float>.Count) { MatMulAccNaive(a, b, c, m, k, n); return; }
        ref float ra = ref MemoryMarshal.GetReference(a);
        ref float rb = ref MemoryMarshal.GetReference(b);
        ref float rc = ref MemoryMarshal.GetReference(c);
        int w = Vector<float>.Count, n2w = n - n % (2 * w), nw = n - n % w;
        int i = 0;
        for (; i + 4 <= m; i += 4)
        {
            ref float a0 = ref Unsafe.Add(ref ra, i * k);
            ref float a1 = ref Unsafe.Add(ref a0, k);
            ref float a2 = ref Unsafe.Add(ref a1, k);
            ref float a3 = ref Unsafe.Add(ref a2, k);
            ref float c0 = ref Unsafe.Add(ref rc, i * n);
            ref float c1 = ref Unsafe.Add(ref c0, n);
            ref float c2 = ref Unsafe.Add(ref c1, n);
            ref float c3 = ref Unsafe.Add(ref c2, n);
            int j = 0;
            for (; j < n2w; j += 2 * w)
            {
                var s00 = Vector.LoadUnsafe(ref c0, (nuint)j); var s01 = Vector.LoadUnsafe(ref c0, (nuint)(j + w));
                var s10 = Vector.LoadUnsafe(ref c1, (nuint)j); var s11 = Vector.LoadUnsafe(ref c1, (nuint)(j + w));
                var s20 = Vector.LoadUnsafe(ref c2, (nuint)j); var s21 = Vector.LoadUnsafe(ref c2, (nuint)(j + w));
                var s30 = Vector.LoadUnsafe(ref c3, (nuint)j); var s31 = Vector.LoadUnsafe(ref c3, (nuint)(j + w));
                ref float bj = ref Unsafe.Add(ref rb, j);
                for (int p = 0; p < k; p++)
                {
                    ref float bp = ref Unsafe.Add(ref bj, p * n);
                    var b0 = Vector.LoadUnsafe(ref bp); var b1 = Vector.LoadUnsafe(ref bp, (nuint)w);
                    var v0 = new Vector<float>(Unsafe.Add(ref a0, p));
                    var v1 = new Vector<float>(Unsafe.Add(ref a1, p));
                    var v2 = new Vector<float>(Unsafe.Add(ref a2, p));
                    var v3 = new Vector<float>(Unsafe.Add(ref a3, p));
                    s00 = Kernels.MulAdd(v0, b0, s00); s01 = Kernels.MulAdd(v0, b1, s01);
                    s10 = Kernels.MulAdd(v1, b0, s10); s11 = Kernels.MulAdd(v1, b1, s11);
                    s20 = Kernels.MulAdd(v2, b0, s20); s21 = Kernels.MulAdd(v2, b1, s21);
                    s30 = Kernels.MulAdd(v3, b0, s30); s31 = Kernels.MulAdd(v3, b1, s31);
                }
                s00.StoreUnsafe(ref c0, (nuint)j); s01.StoreUnsafe(ref c0, (nuint)(j + w));
                s10.StoreUnsafe(ref c1, (nuint)j); s11.StoreUnsafe(ref c1, (nuint)(j + w));
                s20.StoreUnsafe(ref c2, (nuint)j); s21.StoreUnsafe(ref c2, (nuint)(j + w));
                s30.StoreUnsafe(ref c3, (nuint)j); s31.StoreUnsafe(ref c3, (nuint)(j + w));
            }
            for (; j < nw; j += w)
            {
                var s0 = Vector.LoadUnsafe(ref c0, (nuint)j); var s1 = Vector.LoadUnsafe(ref c1, (nuint)j);
                var s2 = Vector.LoadUnsafe(ref c2, (nuint)j); var s3 = Vector.LoadUnsafe(ref c3, (nuint)j);
                ref float bj = ref Unsafe.Add(ref rb, j);
                for (int p = 0; p < k; p++)
                {
                    var b0 = Vector.LoadUnsafe(ref Unsafe.Add(ref bj, p * n));
                    s0 = Kernels.MulAdd(new Vector<float>(Unsafe.Add(ref a0, p)), b0, s0);
                    s1 = Kernels.MulAdd(new Vector<float>(Unsafe.Add(ref a1, p)), b0, s1);
                    s2 = Kernels.MulAdd(new Vector<float>(Unsafe.Add(ref a2, p)), b0, s2);
                    s3 = Kernels.MulAdd(new Vector<float>(Unsafe.Add(ref a3, p)), b0, s3);
                }
                s0.StoreUnsafe(ref c0, (nuint)j); s1.StoreUnsafe(ref c1, (nuint)j);
                s2.StoreUnsafe(ref c2, (nuint)j); s3.StoreUnsafe(ref c3, (nuint)j);
            }
            for (; j < n; j++)
            {
                float t0 = 0, t1 = 0, t2 = 0, t3 = 0;
                for (int p = 0; p < k; p++)
                {
                    float bv = Unsafe.Add(ref rb, p * n + j);
                    t0 += Unsafe.Add(ref a0, p) * bv; t1 += Unsafe.Add(ref a1, p) * bv;
                    t2 += Unsafe.Add(ref a2, p) * bv; t3 += Unsafe.Add(ref a3, p) * bv;
                }
                Unsafe.Add(ref c0, j) += t0; Unsafe.Add(ref c1, j) += t1; Unsafe.Add(ref c2, j) += t2; Unsafe.Add(ref c3, j) += t3;
            }
        }
        if (i < m) MatMulAccNaive(a[(i * k)..], b, c[(i * n)..], m - i, k, n);
    }

    /// <summary>C[K,N] += Aᵀ · B with A[M,K], B[M,N] (weight gradient: inputᵀ · output gradient).</summary>
    public static void MatMulAtBAcc(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> c, int m, int k, int n)
    {
        if (a.Length < m * k || b.Length < m * n || c.Length < k * n) throw new ArgumentException("gemm: buffer too small");
        // Tile over M so that the A and B row panels stay in L1/L2 across the (k, n) register blocks.
        const int Tile = 96;
        for (int m0 = 0; m0 < m; m0 += Tile)
        {
            int mt = Math.Min(Tile, m - m0);
            MatMulAtBAccTile(a.Slice(m0 * k, mt * k), b.Slice(m0 * n, mt * n), c, mt, k, n);
        }
    }

    private static void MatMulAtBAccTile(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> c, int m, int k, int n)
    {
        if (!Vector.IsHardwareAccelerated || n < Vector<float>.Count) { MatMulAtBAccNaive(a, b, c, m, k, n); return; }
        ref float ra = ref MemoryMarshal.GetReference(a);
        ref float rb = ref MemoryMarshal.GetReference(b);
        ref float rc = ref MemoryMarshal.GetReference(c);
        int w = Vector<float>.Count, n2w = n - n % (2 * w), nw = n - n % w;
        int p = 0;
        for (; p + 4 <= k; p += 4)
        {
            ref float c0 = ref Unsafe.Add(ref rc, p * n);
            ref float c1 = ref Unsafe.Add(ref c0, n);
            ref float c2 = ref Unsafe.Add(ref c1, n);
            ref float c3 = ref Unsafe.Add(ref c2, n);
            int j = 0;
            for (; j < n2w; j += 2 * w)
            {
                var s00 = Vector.LoadUnsafe(ref c0, (nuint)j); var s01 = Vector.LoadUnsafe(ref c0, (nuint)(j + w));
                var s10 = Vector.LoadUnsafe(ref c1, (nuint)j); var s11 = Vector.LoadUnsafe(ref c1, (nuint)(j + w));
                var s20 = Vector.LoadUnsafe(ref c2, (nuint)j); var s21 = Vector.LoadUnsafe(ref c2, (nuint)(j + w));
                var s30 = Vector.LoadUnsafe(ref c3, (nuint)j); var s31 = Vector.LoadUnsafe(ref c3, (nuint)(j + w));
                for (int i = 0; i < m; i++)
                {
                    ref float ai = ref Unsafe.Add(ref ra, i * k + p);
                    ref float bi = ref Unsafe.Add(ref rb, i * n + j);
                    var b0 = Vector.LoadUnsafe(ref bi); var b1 = Vector.LoadUnsafe(ref bi, (nuint)w);
                    var v0 = new Vector<float>(ai);
                    var v1 = new Vector<float>(Unsafe.Add(ref ai, 1));
                    var v2 = new Vector<float>(Unsafe.Add(ref ai, 2));
                    var v3 = new Vector<float>(Unsafe.Add(ref ai, 3));
                    s00 = Kernels.MulAdd(v0, b0, s00); s01 = Kernels.MulAdd(v0, b1, s01);
                    s10 = Kernels.MulAdd(v1, b0, s10); s11 = Kernels.MulAdd(v1, b1, s11);
                    s20 = Kernels.MulAdd(v2, b0, s20); s21 = Kernels.MulAdd(v2, b1, s21);
                    s30 = Kernels.MulAdd(v3, b0, s30); s31 = Kernels.MulAdd(v3, b1, s31);
                }
                s00.StoreUnsafe(ref c0, (nuint)j); s01.StoreUnsafe(ref c0, (nuint)(j + w));
                s10.StoreUnsafe(ref c1, (nuint)j); s11.StoreUnsafe(ref c1, (nuint)(j + w));
                s20.StoreUnsafe(ref c2, (nuint)j); s21.StoreUnsafe(ref c2, (nuint)(j + w));
                s30.StoreUnsafe(ref c3, (nuint)j); s31.StoreUnsafe(ref c3, (nuint)(j + w));
            }
            for (; j < nw; j += w)
            {
                var s0 = Vector.LoadUnsafe(ref c0, (nuint)j); var s1 = Vector.LoadUnsafe(ref c1, (nuint)j);
                var s2 = Vector.LoadUnsafe(ref c2, (nuint)j); var s3 = Vector.LoadUnsafe(ref c3, (nuint)j);
                for (int i = 0; i < m; i++)
                {
                    ref float ai = ref Unsafe.Add(ref ra, i * k + p);
                    var b0 = Vector.LoadUnsafe(ref Unsafe.Add(ref rb, i * n + j));
                    s0 = Kernels.MulAdd(new Vector<float>(ai), b0, s0);
                    s1 = Kernels.MulAdd(new Vector<float>(Unsafe.Add(ref ai, 1)), b0, s1);
                    s2 = Kernels.MulAdd(new Vector<float>(Unsafe.Add(ref ai, 2)), b0, s2);
                    s3 = Kernels.MulAdd(new Vector<float>(Unsafe.Add(ref ai, 3)), b0, s3);
                }
                s0.StoreUnsafe(ref c0, (nuint)j); s1.StoreUnsafe(ref c1, (nuint)j);
                s2.StoreUnsafe(ref c2, (nuint)j); s3.StoreUnsafe(ref c3, (nuint)j);
            }
            for (; j < n; j++)
                for (int q = 0; q < 4; q++)
                {
                    float t = 0;
                    for (int i = 0; i < m; i++) t += Unsafe.Add(ref ra, i * k + p + q) * Unsafe.Add(ref rb, i * n + j);
                    Unsafe.Add(ref rc, (p + q) * n + j) += t;
                }
        }
        for (; p < k; p++)
            for (int j = 0; j < n; j++)
            {
                float t = 0;
                for (int i = 0; i < m; i++) t += a[i * k + p] * b[i * n + j];
                c[p * n + j] += t;
            }
    }

    /// <summary>Reference: C[M,N] += A[M,K] · B[K,N].</summary>
    public static void MatMulAccNaive(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> c, int m, int k, int n)
    {
        for (int i = 0; i < m; i++)
            for (int p = 0; p < k; p++)
            {
                float av = a[i * k + p];
                if (av == 0f) continue;
                for (int j = 0; j < n; j++) c[i * n + j] += av * b[p * n + j];
            }
    }

    /// <summary>Reference: C[K,N] += Aᵀ · B.</summary>
    public static void MatMulAtBAccNaive(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> c, int m, int k, int n)
    {
        for (int i = 0; i < m; i++)
            for (int p = 0; p < k; p++)
            {
                float av = a[i * k + p];
                if (av == 0f) continue;
                for (int j = 0; j < n; j++) c[p * n + j] += av * b[i * n + j];
            }
    }

    /// <summary>dst[N,K] = src[K,N]ᵀ.</summary>
    public static void Transpose(ReadOnlySpan<float> src, Span<float> dst, int rows, int cols)
    {
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++) dst[c * rows + r] = src[r * cols + c];
    }
}
