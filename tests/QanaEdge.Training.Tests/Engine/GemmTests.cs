using QanaEdge.Training.Engine;

namespace QanaEdge.Training.Tests.Engine;

/// <summary>The register-blocked kernels agree with the naive loops for every shape class (tails included).</summary>
public class GemmTests
{
    [Theory]
    [InlineData(1, 1, 1)]
    [InlineData(5, 3, 7)]
    [InlineData(4, 27, 24)]
    [InlineData(9, 13, 16)]
    [InlineData(17, 48, 48)]
    [InlineData(130, 96, 40)]
    [InlineData(7, 5, 33)]
    public void OptimizedMatchesNaive(int m, int k, int n)
    {
        var rng = new Rng((ulong)(m * 1000 + k * 10 + n));
        float[] R(int len) { var a = new float[len]; for (int i = 0; i < len; i++) a[i] = rng.NextFloat() - 0.5f; return a; }
        var a = R(m * k); var b = R(k * n); var c0 = R(m * n);
        var c1 = (float[])c0.Clone(); var c2 = (float[])c0.Clone();
        Gemm.MatMulAcc(a, b, c1, m, k, n);
        Gemm.MatMulAccNaive(a, b, c2, m, k, n);
        for (int i = 0; i < c1.Length; i++) Assert.True(Math.Abs(c2[i] - c1[i]) <= 1e-5 * (k + Math.Abs(c2[i])), $"C[{i}]");

        var g = R(m * n); var d0 = R(k * n);
        var d1 = (float[])d0.Clone(); var d2 = (float[])d0.Clone();
        Gemm.MatMulAtBAcc(a, g, d1, m, k, n);
        Gemm.MatMulAtBAccNaive(a, g, d2, m, k, n);
        for (int i = 0; i < d1.Length; i++) Assert.True(Math.Abs(d2[i] - d1[i]) <= 1e-5 * (m + Math.Abs(d2[i])), $"D[{i}]");
    }
}
