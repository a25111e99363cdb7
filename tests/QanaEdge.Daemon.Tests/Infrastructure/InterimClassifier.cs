using QanaEdge.Daemon.Classification;
using QanaEdge.Daemon.Configuration;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;

namespace QanaEdge.Daemon.Tests.Infrastructure;

/// <summary>
/// Stands in for Imaging's LesionClassifier until it is in this build: it really decodes the JPEG (ImageSharp), rejects
/// what does not decode, and derives probabilities from the mean colour. The daemon only sees the IImageClassifier
/// interface, so everything around classification is exercised for real.
/// </summary>
public sealed class InterimClassifier : IImageClassifier
{
    public Classification.Classification Classify(ReadOnlySpan<byte> fileBytes)
    {
        if (fileBytes.Length == 0) throw new CaptureRejectedException("Empty", "the file is empty");
        var sw = System.Diagnostics.Stopwatch.StartNew();
        // ImageSharp decodes a cut-off JPEG without complaint; a JPEG must end with the EOI marker.
        if (fileBytes.Length >= 2 && fileBytes[0] == 0xFF && fileBytes[1] == 0xD8 && !(fileBytes[^2] == 0xFF && fileBytes[^1] == 0xD9))
            throw new CaptureRejectedException("Truncated", "the JPEG stream ends before its EOI marker");
        Image<Rgb24> image;
        try { image = Image.Load<Rgb24>(fileBytes); }
        catch (UnknownImageFormatException e) { throw new CaptureRejectedException("NotAnImage", e.Message, e); }
        catch (InvalidImageContentException e) { throw new CaptureRejectedException("Truncated", e.Message, e); }
        using (image)
        {
            long r = 0, g = 0, b = 0;
            image.ProcessPixelRows(rows =>
            {
                for (int y = 0; y < rows.Height; y++)
                    foreach (Rgb24 p in rows.GetRowSpan(y)) { r += p.R; g += p.G; b += p.B; }
            });
            double n = (double)image.Width * image.Height;
            float[] logits = [(float)(r / n), (float)(g / n), (float)(b / n), 100, (float)((r - b) / n + 100), 110, 90];
            float max = logits.Max();
            float[] p = logits.Select(l => MathF.Exp((l - max) / 10)).ToArray();
            float sum = p.Sum();
            for (int k = 0; k < p.Length; k++) p[k] /= sum;
            int top = Array.IndexOf(p, p.Max());
            return new Classification.Classification(QanaEdge.Model.Classes.Codes[top], p, p[top], p[0] + p[1] + p[4] >= 0.5f, false, sw.Elapsed.TotalMilliseconds);
        }
    }

    public void Dispose() { }

    public sealed class Provider : IClassifierProvider
    {
        public string ModelId => "interim-test";
        public string ModelVersion => "0";
        public string EngineName => "interim test classifier";
        public string EngineReason => "LesionClassifier not yet in this build";
        public IImageClassifier CreateClassifier() => new InterimClassifier();
        public void Dispose() { }
        public static IClassifierProvider Create(QanaOptions _) => new Provider();
    }
}
