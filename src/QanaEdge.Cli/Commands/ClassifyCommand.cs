using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using QanaEdge.Imaging;
using QanaEdge.Model;
using QanaEdge.Model.Packaging;
using QanaEdge.Runtime;

namespace QanaEdge.Cli.Commands;

/// <summary>
/// <c>qana classify IMAGE... [--model PKG] [--json] [--saliency OUT.png] [--symmetries]</c>: one result per image on standard
/// output (one JSON object per line with --json). A bad image is reported on standard error, one line each,
/// and the exit code is 1 when any image failed; the others are still classified. With --json a bad image has its object
/// too, with <c>error</c> (the line on standard error) and <c>reason</c> (the rejection code, or null): one object per
/// image, so that a program reading the lines sees every image it gave, in order.
/// </summary>
public sealed class ClassifyCommand : IVerb
{
    public Command Create(CliContext context)
    {
        var images = new Argument<string[]>("IMAGE") { Description = "image files (JPEG, PNG, BMP, TIFF)", Arity = ArgumentArity.OneOrMore };
        var model = new Option<string?>("--model") { Description = "model package (.qana); default: firmware-models/" };
        var json = new Option<bool>("--json") { Description = "one JSON object per image" };
        var saliency = new Option<string?>("--saliency")
        {
            Description = "write the Grad-CAM heat map and crop over the image to this PNG (OUT.<image name>.png for several images)",
        };
        var symmetries = new Option<bool>("--symmetries")
        {
            Description = "instead of tiling, average an unsure view with its 7 rotations and mirrors (the daemon's Qana:Fallback=Symmetries)",
        };
        var command = new Command("classify", "Classify dermoscopic images with a model package.") { images, model, json, saliency, symmetries };
        command.SetAction(parse => Run(context, parse.GetRequiredValue(images), parse.GetValue(model), parse.GetValue(json), parse.GetValue(saliency),
            parse.GetValue(symmetries)));
        return command;
    }

    private static int Run(CliContext context, string[] images, string? modelPath, bool json, string? saliencyPath, bool symmetries)
    {
        ModelPackage package = Files.LoadModel(DefaultModel.Locate(modelPath));
        IntegerEngine engine;
        try
        {
            engine = LesionClassifier.CreateEngine(package);
        }
        catch (InvalidGraphException e)
        {
            throw new CommandFailedException($"the model cannot run: {e.Message}");
        }
        // The overlays' folder is checked once, before any image: a missing one was reported again for every image.
        // A folder given for OUT is refused with several images too (with one, CheckWritable refuses it): OverlayPath
        // made "DIR/" into hidden files DIR/.IMAGE.png, and "DIR" into DIR.IMAGE.png beside it.
        if (saliencyPath is not null) Files.RefuseFolder(saliencyPath, "--saliency");
        if (saliencyPath is not null) Files.CheckWritable(OverlayPath(saliencyPath, images[0], images.Length));
        if (saliencyPath is not null && HeadInfo.Find(package.Graph) is null)
            throw new CommandFailedException("--saliency: this model has no Grad-CAM map (its head has no spatial feature map to read)");
        using (engine)
        {
            // The map is that of the centred view, the one Grad-CAM is defined on; asking for it changes no result.
            var classifier = new LesionClassifier(package, engine, new ClassifierOptions { SaliencyMap = saliencyPath is not null, Symmetries = symmetries });
            bool failed = false;
            var overlays = new HashSet<string>(StringComparer.Ordinal);
            foreach (string image in images)
            {
                byte[]? bytes = null;
                try
                {
                    bytes = ReadImage(image);
                    LesionResult result = classifier.Classify(bytes);
                    if (saliencyPath is not null)
                    {
                        RgbImage decoded = ImageDecoder.Decode(bytes);
                        // Written whole through Files: a failure names the overlay and leaves no temporary file behind.
                        Files.WriteAtomically(UniqueIn(overlays, OverlayPath(saliencyPath, image, images.Length)),
                            SaliencyOverlay.EncodePng(SaliencyOverlay.Render(decoded, result.Saliency, result.Crop)));
                    }
                    context.Out.WriteLine(json ? ToJson(image, result) : ToText(image, result));
                }
                catch (Exception e) when (e is ImageRejectedException or CommandFailedException or IOException or UnauthorizedAccessException)
                {
                    failed = true;
                    string why = e is ImageRejectedException r ? $"rejected ({r.ReasonCode}): {r.Message}" : e.Message;
                    // The package given where the images go (qana classify PKG IMAGE): say so, not only "no known image signature".
                    if (e is ImageRejectedException { Reason: RejectReason.NotAnImage } && bytes.AsSpan().StartsWith(PackageFormat.Magic)) why += "; it is a model package: give it with --model";
                    context.Err.WriteLine($"qana: {image}: {Cli.OneLine(why)}");
                    if (json) context.Out.WriteLine(ErrorJson(image, (e as ImageRejectedException)?.ReasonCode, Cli.OneLine(why)));
                }
            }
            return failed ? Cli.Failure : Cli.Ok;
        }
    }

    private static byte[] ReadImage(string path)
    {
        if (ExpectedPath.FileProblem(path) is { } problem) throw new CommandFailedException(problem);
        return ImageDecoder.ReadFile(path, DecodeLimits.Default);
    }

    /// <summary>OUT.png for one image; OUT.&lt;image name&gt;.png for several, so none overwrites another.</summary>
    public static string OverlayPath(string output, string image, int count)
    {
        if (count == 1) return output;
        string dir = Path.GetDirectoryName(output) ?? "";
        string stem = Path.GetFileNameWithoutExtension(output);
        string ext = Path.GetExtension(output) is { Length: > 0 } e ? e : ".png";
        return Path.Combine(dir, $"{stem}.{Path.GetFileNameWithoutExtension(image)}{ext}");
    }

    /// <summary>The path, or with .2, .3 ... before its extension when an earlier image of the same name took it (a/x.jpg, b/x.jpg).</summary>
    private static string UniqueIn(HashSet<string> used, string path)
    {
        string candidate = path;
        for (int n = 2; !used.Add(candidate); n++)
            candidate = Path.Combine(Path.GetDirectoryName(path) ?? "", $"{Path.GetFileNameWithoutExtension(path)}.{n}{Path.GetExtension(path)}");
        return candidate;
    }

    private static string F(double v) => v.ToString("0.0000", CultureInfo.InvariantCulture);

    internal static string ToText(string image, LesionResult r)
    {
        var sb = new StringBuilder();
        sb.Append(image).Append(": ").Append(r.Label).Append(' ').Append(F(r.Confidence));
        sb.Append(r.Refer ? "  REFER" : "  no referral").Append(" (malignancy ").Append(F(r.MalignancyScore)).Append(')');
        sb.Append("  crop ").Append(r.Crop).Append(' ').Append(r.CropReasonCode);
        if (r.Tiled) sb.Append("  tiled");
        if (r.Symmetrized) sb.Append("  symmetrized");
        sb.Append("  ").Append(r.LatencyMs.ToString("0.0", CultureInfo.InvariantCulture)).Append(" ms");
        return sb.ToString();
    }

    /// <summary>The object of an image that was not classified: image, error (as on standard error), reason (the rejection code, or null). One line.</summary>
    internal static string ErrorJson(string image, string? reason, string error)
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream))
        {
            w.WriteStartObject();
            w.WriteString("image", image);
            w.WriteString("error", error);
            if (reason is null) w.WriteNull("reason");
            else w.WriteString("reason", reason);
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(stream.ToArray());
    }

    /// <summary>The DESIGN.md contract: image, label, probabilities (class code → p), confidence, tiled, crop,
    /// latency_ms, events; plus refer, malignancy and crop_reason. One line.</summary>
    internal static string ToJson(string image, LesionResult r)
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream))
        {
            w.WriteStartObject();
            w.WriteString("image", image);
            w.WriteString("label", r.Label);
            w.WriteStartObject("probabilities");
            for (int k = 0; k < r.Probabilities.Length; k++) w.WriteNumber(r.Classes[k], Math.Round(r.Probabilities[k], 6));
            w.WriteEndObject();
            w.WriteNumber("confidence", Math.Round(r.Confidence, 6));
            w.WriteBoolean("refer", r.Refer);
            w.WriteNumber("malignancy", Math.Round(r.MalignancyScore, 6));
            w.WriteBoolean("tiled", r.Tiled);
            if (r.Symmetrized) w.WriteBoolean("symmetrized", true);
            w.WriteStartObject("crop");
            w.WriteNumber("x", r.Crop.X);
            w.WriteNumber("y", r.Crop.Y);
            w.WriteNumber("size", r.Crop.Size);
            w.WriteEndObject();
            w.WriteString("crop_reason", r.CropReasonCode);
            w.WriteNumber("latency_ms", Math.Round(r.LatencyMs, 3));
            w.WriteNumber("events", r.Events);
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(stream.ToArray());
    }
}
