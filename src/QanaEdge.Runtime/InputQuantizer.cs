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
        int i = 0;
        // p − 128 is p XOR 0x80 reinterpreted as signed: one vector op per 16/32/64 pixels.
        if (System.Numerics.Vector.IsHardwareAccelerated)
        {
            var mask = new System.Numerics.Vector<byte>(0x80);
            var dstBytes = System.Runtime.InteropServices.MemoryMarshal.AsBytes(dst);
            int width = System.Numerics.Vector<byte>.Count;
            for (; i + width <= rgbHwc.Length; i += width)
                (new System.Numerics.Vector<byte>(rgbHwc[i..]) ^ mask).CopyTo(dstBytes[i..]);
        }
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
