using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using QanaEdge.Runtime.Kernels;

namespace QanaEdge.Runtime;

/// <summary>
/// Turns uint8 RGB pixels (HWC) into the network's int8 input. With the input quantization of every
/// QANA package (scale 1/255, zero point −128) a pixel p becomes p − 128: no arithmetic beyond a subtraction.
/// </summary>
public static class InputQuantizer
{
    public static void Quantize(ReadOnlySpan<byte> rgbHwc, Span<sbyte> dst)
    {
        if (dst.Length != rgbHwc.Length)
            throw new ArgumentException($"destination holds {dst.Length} values, the image {rgbHwc.Length}", nameof(dst));
        // p − 128 is p XOR 0x80 reinterpreted as signed: one vector op per 64/32/16 pixels, at the widths the
        // kernel cap allows (InstructionSets), so a capped run exercises the same widths here as in the kernels.
        ref byte src = ref MemoryMarshal.GetReference(rgbHwc);
        ref byte to = ref Unsafe.As<sbyte, byte>(ref MemoryMarshal.GetReference(dst));
        int i = 0;
        if (InstructionSets.Vector512)
            for (; i + 64 <= rgbHwc.Length; i += 64)
                (Vector512.LoadUnsafe(ref src, (nuint)i) ^ Vector512.Create((byte)0x80)).StoreUnsafe(ref to, (nuint)i);
        if (InstructionSets.Vector256)
            for (; i + 32 <= rgbHwc.Length; i += 32)
                (Vector256.LoadUnsafe(ref src, (nuint)i) ^ Vector256.Create((byte)0x80)).StoreUnsafe(ref to, (nuint)i);
        if (InstructionSets.Vector128)
            for (; i + 16 <= rgbHwc.Length; i += 16)
                (Vector128.LoadUnsafe(ref src, (nuint)i) ^ Vector128.Create((byte)0x80)).StoreUnsafe(ref to, (nuint)i);
        for (; i < rgbHwc.Length; i++) dst[i] = (sbyte)(rgbHwc[i] - 128);
    }

    /// <summary>General form for any input quantization: q = clamp(zp + round(p / 255 / scale)).</summary>
    public static void Quantize(ReadOnlySpan<byte> rgbHwc, Span<sbyte> dst, double scale, int zeroPoint)
    {
        if (Math.Abs(scale - 1.0 / 255) < 1e-12 && zeroPoint == -128) { Quantize(rgbHwc, dst); return; }
        if (dst.Length != rgbHwc.Length)
            throw new ArgumentException($"destination holds {dst.Length} values, the image {rgbHwc.Length}", nameof(dst));
        for (int i = 0; i < rgbHwc.Length; i++)
        {
            double q = zeroPoint + Math.Round(rgbHwc[i] / 255.0 / scale, MidpointRounding.AwayFromZero);
            dst[i] = (sbyte)Math.Clamp(q, -128, 127);
        }
    }
}
