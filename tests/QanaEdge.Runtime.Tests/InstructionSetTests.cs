using System.Runtime.Intrinsics;
using Arm = System.Runtime.Intrinsics.Arm;
using X86 = System.Runtime.Intrinsics.X86;
using QanaEdge.Runtime.Kernels;

namespace QanaEdge.Runtime.Tests;

/// <summary>
/// The kernel cap (<c>QANA_KERNEL_ISA</c>) that lets this suite run the AVX-VNNI, AVX2, SSE2 and portable kernels on a
/// machine that has AVX-512: .ci/test-summary runs the project once more under each cap, and these tests check that the cap
/// read by the process is the one in effect, so a bit-exactness pass under a cap is a pass of that cap's kernels.
/// </summary>
public class InstructionSetTests
{
    [Fact]
    public void The_cap_from_the_environment_is_in_effect_and_never_exceeds_the_cpu()
    {
        // A mistyped cap would run the uncapped kernels under the cap's name: the suite must fail instead.
        Assert.Null(InstructionSets.CapError);
        var expected = InstructionSets.ParseCap(Environment.GetEnvironmentVariable("QANA_KERNEL_ISA"));
        Assert.Equal(expected, InstructionSets.Cap);

        Assert.Equal(expected >= InstructionSets.Level.Avx512 && X86.Avx512BW.IsSupported, InstructionSets.Avx512BW);
        Assert.Equal(expected >= InstructionSets.Level.Avx512 && Vector512.IsHardwareAccelerated, InstructionSets.Vector512);
        Assert.Equal(expected >= InstructionSets.Level.AvxVnni && X86.AvxVnni.IsSupported, InstructionSets.AvxVnni);
        Assert.Equal(expected > InstructionSets.Level.Portable && Arm.AdvSimd.Arm64.IsSupported && Arm.Dp.IsSupported, InstructionSets.ArmDot);
        Assert.Equal(expected >= InstructionSets.Level.Avx2 && X86.Avx2.IsSupported, InstructionSets.Avx2);
        Assert.Equal(expected >= InstructionSets.Level.Avx2 && Vector256.IsHardwareAccelerated, InstructionSets.Vector256);
        Assert.Equal(expected >= InstructionSets.Level.Sse2 && X86.Sse2.IsSupported, InstructionSets.Sse2);
        Assert.Equal(Vector128.IsHardwareAccelerated, InstructionSets.Vector128);
        Assert.EndsWith($"(cap {InstructionSets.CapName})", InstructionSets.Describe());
    }

    [Theory]
    [InlineData(null, InstructionSets.Level.Avx512)]
    [InlineData("", InstructionSets.Level.Avx512)]
    [InlineData("avxvnni", InstructionSets.Level.AvxVnni)]
    [InlineData("avx2", InstructionSets.Level.Avx2)]
    [InlineData(" SSE2 ", InstructionSets.Level.Sse2)]
    [InlineData("portable", InstructionSets.Level.Portable)]
    public void Cap_values_parse(string? value, InstructionSets.Level level) => Assert.Equal(level, InstructionSets.ParseCap(value));

    [Fact]
    public void An_unknown_cap_is_refused_with_the_values_it_accepts()
    {
        var e = Assert.Throws<InvalidOperationException>(() => InstructionSets.ParseCap("neon"));
        Assert.Contains("avxvnni, avx2, sse2 or portable", e.Message);
    }

    /// <summary>What the type initializer does with the variable: it never throws (a throw there would be a
    /// TypeInitializationException at the first kernel use, for the life of the process); an unknown value leaves the
    /// kernels uncapped and gives the one line that qana and qanad report before they start.</summary>
    [Fact]
    public void Reading_an_unknown_cap_gives_no_cap_and_a_line_naming_the_variable()
    {
        var (cap, error) = InstructionSets.ReadCap("avx512");
        Assert.Equal(InstructionSets.Level.Avx512, cap);
        Assert.Equal("QANA_KERNEL_ISA='avx512' is not a kernel cap: expected avxvnni, avx2, sse2 or portable (or unset for none)", error);
        Assert.Equal((InstructionSets.Level.Sse2, (string?)null), InstructionSets.ReadCap("sse2"));
        Assert.Equal((InstructionSets.Level.Avx512, (string?)null), InstructionSets.ReadCap(null));
    }
}
