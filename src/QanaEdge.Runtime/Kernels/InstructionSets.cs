using System.Runtime.Intrinsics;
using Arm = System.Runtime.Intrinsics.Arm;
using X86 = System.Runtime.Intrinsics.X86;

namespace QanaEdge.Runtime.Kernels;

/// <summary>
/// The vector instruction sets the optimized kernels may use: what this CPU has, capped by the environment variable
/// <c>QANA_KERNEL_ISA</c> (<c>avxvnni</c>, <c>avx2</c>, <c>sse2</c> or <c>portable</c>; unset: no cap).
/// <para>
/// Every kernel choice goes through these flags. The cap exists because an x64 machine with AVX-512 would otherwise
/// never run the kernels that other machines do: the AVX2 ones of the x86-64-v3 binary <c>make publish</c> ships, and
/// the portable Vector128 ones an ARM64 board runs (no x86 intrinsics, no 256- or 512-bit vectors). The test suite runs
/// the bit-exactness tests once more under each cap, and <c>qana bench</c> can measure each. Read once at start
/// (static readonly), so the JIT folds the checks; the cap never raises a flag the CPU does not have.
/// </para>
/// <para>
/// An unknown value must not surface as a TypeInitializationException at the first kernel use: the initializer never
/// throws. It leaves the kernels uncapped and records the problem in <see cref="CapError"/>, which <c>qana</c> and
/// <c>qanad</c> check before they do anything else and report as bad usage / bad configuration (exit 2).
/// </para>
/// </summary>
public static class InstructionSets
{
    /// <summary>How wide the kernels may go; <see cref="Avx512"/> is no cap.</summary>
    public enum Level { Portable, Sse2, Avx2, AvxVnni, Avx512 }

    /// <summary>The environment variable that caps the kernels.</summary>
    public const string CapVariable = "QANA_KERNEL_ISA";

    private static readonly (Level Cap, string? Error) FromEnvironment = ReadCap(Environment.GetEnvironmentVariable(CapVariable));

    /// <summary>The cap in effect (<see cref="Level.Avx512"/> when unset, or when the value is unknown: see <see cref="CapError"/>).</summary>
    public static readonly Level Cap = FromEnvironment.Cap;

    /// <summary>Why <c>QANA_KERNEL_ISA</c> was not understood (one line naming the variable, its value and the values
    /// it takes), or null when it is unset or valid. Entry points refuse to start while it is set.</summary>
    public static readonly string? CapError = FromEnvironment.Error;

    /// <summary>The cap in effect: "none", "avxvnni", "avx2", "sse2" or "portable".</summary>
    public static readonly string CapName = Cap == Level.Avx512 ? "none" : Cap.ToString().ToLowerInvariant();

    public static readonly bool Avx512BW = Cap >= Level.Avx512 && X86.Avx512F.IsSupported && X86.Avx512BW.IsSupported;
    public static readonly bool Avx512DQ = Cap >= Level.Avx512 && X86.Avx512F.IsSupported && X86.Avx512DQ.IsSupported;
    public static readonly bool Avx512Vbmi = Cap >= Level.Avx512 && X86.Avx512Vbmi.IsSupported;
    public static readonly bool Avx2 = Cap >= Level.Avx2 && X86.Avx2.IsSupported;
    /// <summary>AVX-VNNI's vpdpbusd (256-bit): the GEMMs run 4-way int8 dot products; <c>avx2</c> turns it off.</summary>
    public static readonly bool AvxVnni = Cap >= Level.AvxVnni && X86.AvxVnni.IsSupported;
    /// <summary>ARMv8.2's sdot: the GEMMs run 4-way int8 dot products. x64 caps name no ARM feature, so only
    /// <c>portable</c> turns it off.</summary>
    public static readonly bool ArmDot = Cap > Level.Portable && Arm.AdvSimd.Arm64.IsSupported && Arm.Dp.IsSupported;
    public static readonly bool Sse2 = Cap >= Level.Sse2 && X86.Sse2.IsSupported;
    public static readonly bool Vector512 = Cap >= Level.Avx512 && System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated;
    public static readonly bool Vector256 = Cap >= Level.Avx2 && System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated;
    public static readonly bool Vector128 = System.Runtime.Intrinsics.Vector128.IsHardwareAccelerated;

    /// <summary>One line for logs and benchmarks, e.g. "avx512bw avx512dq avx512vbmi avx2 sse2 v512 v256 v128 (cap none)".</summary>
    public static string Describe()
    {
        var on = new List<string>();
        if (Avx512BW) on.Add("avx512bw");
        if (Avx512DQ) on.Add("avx512dq");
        if (Avx512Vbmi) on.Add("avx512vbmi");
        if (AvxVnni) on.Add("avxvnni");
        if (Avx2) on.Add("avx2");
        if (Sse2) on.Add("sse2");
        if (ArmDot) on.Add("sdot");
        if (Vector512) on.Add("v512");
        if (Vector256) on.Add("v256");
        if (Vector128) on.Add("v128");
        return $"{(on.Count == 0 ? "scalar" : string.Join(' ', on))} (cap {CapName})";
    }

    /// <summary>Parses a <c>QANA_KERNEL_ISA</c> value; unset or empty is no cap, anything unknown is an error.</summary>
    /// <exception cref="InvalidOperationException">An unknown value (the message is <see cref="ReadCap"/>'s error).</exception>
    public static Level ParseCap(string? value)
    {
        var (cap, error) = ReadCap(value);
        return error is null ? cap : throw new InvalidOperationException(error);
    }

    /// <summary>Reads a <c>QANA_KERNEL_ISA</c> value without throwing: an unknown value gives no cap and an error line.</summary>
    public static (Level Cap, string? Error) ReadCap(string? value) => value?.Trim().ToLowerInvariant() switch
    {
        null or "" => (Level.Avx512, null),
        "avxvnni" => (Level.AvxVnni, null),
        "avx2" => (Level.Avx2, null),
        "sse2" => (Level.Sse2, null),
        "portable" => (Level.Portable, null),
        _ => (Level.Avx512, $"{CapVariable}='{value}' is not a kernel cap: expected avxvnni, avx2, sse2 or portable (or unset for none)"),
    };
}
