using System.Numerics;
using QanaEdge.Training.Engine;

namespace QanaEdge.Training.Tests.Engine;

/// <summary>
/// The training kernels run at <see cref="Vector{T}"/>'s width. .ci/test-summary runs these engine tests once more
/// with <c>DOTNET_MaxVectorTBitWidth=128</c>, the 4-lane blocking an ARM64 board runs; this checks that the setting
/// took effect, so that pass is a pass of the 4-lane kernels and not a second run of the 8-lane ones.
/// </summary>
public class VectorWidthTests
{
    [Fact]
    public void The_kernels_are_vectorised_at_the_width_the_environment_sets()
    {
        Assert.True(Vector.IsHardwareAccelerated, "the training kernels would run their scalar loops");
        string? bits = Environment.GetEnvironmentVariable("DOTNET_MaxVectorTBitWidth");
        if (bits == "128") Assert.Equal(4, Kernels.Lanes);
        else Assert.InRange(Kernels.Lanes, 4, 16);
    }
}
