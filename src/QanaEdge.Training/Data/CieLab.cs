namespace QanaEdge.Training.Data;

/// <summary>sRGB (D65) ↔ CIELAB for one pixel with components in [0, 1]. Scalar code: an augmentation
/// touches 4,096 pixels of a 64×64 crop, far below the cost of a training step.</summary>
internal static class CieLab
{
    private const double Xn = 0.95047, Yn = 1.0, Zn = 1.08883;
    private const double Delta = 6.0 / 29.0;

    /// <summary>sRGB → linear for every byte value, so byte images skip the power function.</summary>
    private static readonly double[] LinearOfByte = BuildLinearTable();

    private static double[] BuildLinearTable()
    {
        var t = new double[256];
        for (int i = 0; i < 256; i++) t[i] = ToLinear(i / 255.0);
        return t;
    }

    public static double ToLinear(double c) => c <= 0.04045 ? c / 12.92 : Math.Pow((c + 0.055) / 1.055, 2.4);
    public static double LinearOf(byte c) => LinearOfByte[c];
    public static double ToSrgb(double c) => c <= 0.0031308 ? 12.92 * c : 1.055 * Math.Pow(c, 1 / 2.4) - 0.055;

    private static double F(double t) => t > Delta * Delta * Delta ? Math.Cbrt(t) : t / (3 * Delta * Delta) + 4.0 / 29.0;
    private static double FInverse(double t) => t > Delta ? t * t * t : 3 * Delta * Delta * (t - 4.0 / 29.0);

    /// <summary>Linear RGB → (L in [0,100], a, b).</summary>
    public static (double L, double A, double B) FromLinear(double r, double g, double b)
    {
        double x = 0.4124564 * r + 0.3575761 * g + 0.1804375 * b;
        double y = 0.2126729 * r + 0.7151522 * g + 0.0721750 * b;
        double z = 0.0193339 * r + 0.1191920 * g + 0.9503041 * b;
        double fx = F(x / Xn), fy = F(y / Yn), fz = F(z / Zn);
        return (116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz));
    }

    /// <summary>Only the lightness, for statistics over an image.</summary>
    public static double Lightness(double r, double g, double b) =>
        116 * F(0.2126729 * r + 0.7151522 * g + 0.0721750 * b) - 16;

    /// <summary>CIELAB → sRGB components (not clamped; out-of-gamut values fall outside [0, 1]).</summary>
    public static (double R, double G, double B) ToSrgb(double l, double a, double bb)
    {
        double fy = (l + 16) / 116, fx = fy + a / 500, fz = fy - bb / 200;
        double x = Xn * FInverse(fx), y = Yn * FInverse(fy), z = Zn * FInverse(fz);
        double r = 3.2404542 * x - 1.5371385 * y - 0.4985314 * z;
        double g = -0.9692660 * x + 1.8760108 * y + 0.0415560 * z;
        double b = 0.0556434 * x - 0.2040259 * y + 1.0572252 * z;
        return (ToSrgb(Math.Max(r, 0)), ToSrgb(Math.Max(g, 0)), ToSrgb(Math.Max(b, 0)));
    }
}
