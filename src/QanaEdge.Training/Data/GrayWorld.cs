namespace QanaEdge.Training.Data;

/// <summary>
/// Gray-world colour normalisation: per-channel gains g_c = mean(all channels) / mean(channel c), fitted on
/// the training split only (fitting on validation or test images would leak them) and stored in the
/// package manifest (Input.ColorGains) so the device applies the same gains; training applies them with the
/// device's own function, Preprocessor.ApplyColorGains, so the two cannot round differently. Dermatoscopes differ in white
/// balance; one data-set-wide gain pulls them to a common cast without per-image hue changes.
/// </summary>
public sealed class GrayWorld
{
    private readonly double[] _sum = new double[3];
    private long _pixels;

    /// <summary>Adds an HWC RGB image (bytes) to the running channel sums.</summary>
    public void Add(ReadOnlySpan<byte> hwc)
    {
        if (hwc.Length % 3 != 0) throw new ArgumentException("an RGB image has a multiple of 3 values");
        long r = 0, g = 0, b = 0;
        for (int i = 0; i < hwc.Length; i += 3) { r += hwc[i]; g += hwc[i + 1]; b += hwc[i + 2]; }
        _sum[0] += r; _sum[1] += g; _sum[2] += b;
        _pixels += hwc.Length / 3;
    }

    /// <summary>Adds an HWC RGB image with values in [0, 1].</summary>
    public void Add(ReadOnlySpan<float> hwc)
    {
        if (hwc.Length % 3 != 0) throw new ArgumentException("an RGB image has a multiple of 3 values");
        double r = 0, g = 0, b = 0;
        for (int i = 0; i < hwc.Length; i += 3) { r += hwc[i]; g += hwc[i + 1]; b += hwc[i + 2]; }
        _sum[0] += r * 255; _sum[1] += g * 255; _sum[2] += b * 255;
        _pixels += hwc.Length / 3;
    }

    public long Pixels => _pixels;

    /// <summary>The gains (R, G, B); their mean-weighted effect keeps the overall brightness.</summary>
    public float[] Gains()
    {
        if (_pixels == 0) throw new InvalidOperationException("no images were added");
        double gray = (_sum[0] + _sum[1] + _sum[2]) / 3;
        var gains = new float[3];
        for (int c = 0; c < 3; c++)
        {
            if (_sum[c] <= 0) throw new DatasetException($"channel {"RGB"[c]} is black in every image: gray-world gains are undefined");
            gains[c] = (float)(gray / _sum[c]);
        }
        return gains;
    }
}
