using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using QanaEdge.Model.Graph;
using QanaEdge.Model.Packaging;

namespace QanaEdge.Cli.Commands;

/// <summary>
/// <c>qana inspect PKG [--json]</c>: manifest, per-layer conversion table (name, op, shape, scale, zero
/// point, reparameterisation, kernel), conversion success rate, metrics, calibration, and the akd1000
/// profile check. The package is fully validated on load; the signature is shown, not verified.
/// </summary>
public sealed class InspectCommand : IVerb
{
    public Command Create(CliContext context)
    {
        var json = new Option<bool>("--json") { Description = "print one JSON object instead of text" };
        var package = new Argument<string>("PKG") { Description = "package to inspect (.qana)" };
        var command = new Command("inspect", "Show a model package: manifest, conversion table, metrics, calibration, profile check.") { json, package };
        command.SetAction(parse =>
        {
            string path = parse.GetRequiredValue(package);
            ModelPackage p = PackageReader.Load(path);
            IReadOnlyList<string> profile = ProfileChecker.Check(p);
            if (parse.GetValue(json)) context.Out.WriteLine(ToJson(p, path, profile));
            else context.Out.Write(ToText(p, path, profile));
            return Cli.Ok;
        });
        return command;
    }

    private static string F(double v) => v.ToString("G6", CultureInfo.InvariantCulture);

    private static string Shape(TensorSpec t) => $"{t.Height}x{t.Width}x{t.Channels}";

    /// <summary>Weight scale column: the value, or the range of per-channel values.</summary>
    private static string WeightScale(Node n) => n.WeightScales switch
    {
        null => "-",
        [double s] => F(s),
        double[] s => $"{F(s.Min())}..{F(s.Max())} ({s.Length})",
    };

    private static LayerRecord? Record(ModelManifest m, Node n) => m.Layers.FirstOrDefault(l => l.Name == n.Name);

    private static int DequantizeCount(ModelManifest m) => m.Layers.Count(l => l.NeedsDequantize);

    internal static string ToText(ModelPackage p, string path, IReadOnlyList<string> profile)
    {
        ModelManifest m = p.Manifest;
        ModelGraph g = p.Graph;
        var sb = new StringBuilder();
        void Line(string s = "") => sb.Append(s).Append('\n');
        TensorSpec input = g.Tensors[g.InputTensor];

        Line($"package      {path}");
        Line($"model        {m.ModelId} {m.Version} ({PackageSigner.KindName(m.Kind)})");
        if (m.Kind == PackageKind.ReadoutUpdate) Line($"applies to   {m.BaseModelId} {m.BaseModelVersion}");
        if (m.CreatedUtc.Length > 0) Line($"created      {m.CreatedUtc}");
        Line($"profile      {ProfileName(m)}");
        Line($"classes      {string.Join(' ', m.Classes)}");
        Line($"input        {m.Input.Height}x{m.Input.Width}x{m.Input.Channels}, tensor scale {F(input.Scale)} zero point {input.ZeroPoint}, colour gains {string.Join(' ', m.Input.ColorGains.Select(x => F(x)))}");
        Line($"content      sha256 {p.ContentSha256}");
        Line($"signature    {(p.Signature is null ? "none" : $"{PackageSignature.RoleName(p.Signature.Role)} key {p.Signature.KeyIdHex} (not verified here: use 'qana verify')")}");
        Line($"graph        {g.Tensors.Length} tensors, {g.Nodes.Length} nodes, {ParameterCount(g)} parameters, {Macs(g)} MACs");
        Line($"conversion   success rate {(100 * m.ConversionSuccessRate).ToString("0.0", CultureInfo.InvariantCulture)}% ({DequantizeCount(m)} of {m.Layers.Length} recorded layers need a dequantize)");
        Line();

        string[] header = ["#", "name", "op", "output", "scale", "zp", "w-scale", "clamp", "reparam", "kernel"];
        var rows = new List<string[]> { header };
        for (int i = 0; i < g.Nodes.Length; i++)
        {
            Node n = g.Nodes[i];
            TensorSpec o = g.Tensors[n.Output];
            LayerRecord? r = Record(m, n);
            string op = OpNames.Of(n.Kind) + (n.Kind is OpKind.Conv2D or OpKind.DepthwiseConv2D
                ? $" {n.KernelHeight}x{n.KernelWidth}/{n.StrideHeight}{(n.Padding == Padding.Valid ? " valid" : "")}"
                : n.Kind == OpKind.PointwiseConv2D && n.StrideHeight > 1 ? $" /{n.StrideHeight}" : "");
            rows.Add([
                i.ToString(CultureInfo.InvariantCulture), n.Name, op, Shape(o) + (o.Type == DataType.Int32 ? " i32" : ""),
                F(o.Scale), o.ZeroPoint.ToString(CultureInfo.InvariantCulture), WeightScale(n),
                n.ClampMin == sbyte.MinValue && n.ClampMax == sbyte.MaxValue ? "-" : $"[{n.ClampMin},{n.ClampMax}]",
                (r?.Reparameterisation is { Length: > 0 } rp && rp != "none" ? rp : n.Reparameterisation) + (r?.NeedsDequantize == true ? " DEQUANTIZE" : ""),
                n.Kernel.Length > 0 ? n.Kernel : (r?.Kernel ?? ""),
            ]);
        }
        int[] widths = Enumerable.Range(0, header.Length).Select(c => rows.Max(r => r[c].Length)).ToArray();
        foreach (string[] row in rows)
            Line(string.Join("  ", row.Select((cell, c) => cell.PadRight(widths[c]))).TrimEnd());
        Line();

        Line("metrics" + (m.Metrics.Count == 0 ? "      none" : ""));
        foreach (var (key, value) in m.Metrics.OrderBy(kv => kv.Key, StringComparer.Ordinal)) Line($"  {key,-24} {F(value)}");
        Calibration c = m.Calibration;
        Line("calibration");
        Line($"  readout window T        {c.ReadoutWindow}");
        Line($"  thresholds              {(c.Thresholds.Length == 0 ? "-" : string.Join(' ', c.Thresholds))}");
        Line($"  beta                    {F(c.Beta)}");
        Line($"  step weights            {(c.StepWeights.Length == 0 ? "all 1" : string.Join(' ', c.StepWeights.Select(F)))}");
        Line($"  tiling tau              {F(c.TilingTau)}");
        Line($"  referral threshold      {F(c.ReferralThreshold)}");
        Line($"  saliency flat cv        {F(c.SaliencyFlatCv)}");
        Line($"golden       {m.Golden.Length} self-test vectors");
        if (m.Provenance.Count > 0)
        {
            Line("provenance");
            foreach (var (key, value) in m.Provenance.OrderBy(kv => kv.Key, StringComparer.Ordinal)) Line($"  {key,-24} {value}");
        }
        Line($"akd1000      {(profile.Count == 0 ? "pass" : $"{profile.Count} violations")}");
        foreach (string v in profile.Take(20)) Line($"  {v}");
        if (profile.Count > 20) Line($"  ... and {profile.Count - 20} more");
        return sb.ToString();
    }

    internal static string ToJson(ModelPackage p, string path, IReadOnlyList<string> profile)
    {
        ModelManifest m = p.Manifest;
        ModelGraph g = p.Graph;
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteString("path", path);
            w.WriteString("model_id", m.ModelId);
            w.WriteString("version", m.Version);
            w.WriteString("kind", PackageSigner.KindName(m.Kind));
            if (m.BaseModelId is not null) w.WriteString("base_model_id", m.BaseModelId);
            if (m.BaseModelVersion is not null) w.WriteString("base_model_version", m.BaseModelVersion);
            w.WriteString("created_utc", m.CreatedUtc);
            w.WriteString("profile", ProfileName(m));
            w.WriteStartArray("classes");
            foreach (string cls in m.Classes) w.WriteStringValue(cls);
            w.WriteEndArray();
            w.WriteStartObject("input");
            w.WriteNumber("height", m.Input.Height);
            w.WriteNumber("width", m.Input.Width);
            w.WriteNumber("channels", m.Input.Channels);
            w.WriteNumber("scale", g.Tensors[g.InputTensor].Scale);
            w.WriteNumber("zero_point", g.Tensors[g.InputTensor].ZeroPoint);
            w.WriteStartArray("color_gains");
            foreach (float x in m.Input.ColorGains) w.WriteNumberValue(x);
            w.WriteEndArray();
            w.WriteEndObject();
            w.WriteString("content_sha256", p.ContentSha256);
            if (p.Signature is null) w.WriteNull("signature");
            else
            {
                w.WriteStartObject("signature");
                w.WriteString("role", PackageSignature.RoleName(p.Signature.Role));
                w.WriteString("key_id", p.Signature.KeyIdHex);
                w.WriteBoolean("verified", false);
                w.WriteEndObject();
            }
            w.WriteNumber("tensors", g.Tensors.Length);
            w.WriteNumber("nodes", g.Nodes.Length);
            w.WriteNumber("parameters", ParameterCount(g));
            w.WriteNumber("macs", Macs(g));
            w.WriteNumber("conversion_success_rate", m.ConversionSuccessRate);
            w.WriteNumber("dequantize_layers", DequantizeCount(m));
            w.WriteStartArray("layers");
            for (int i = 0; i < g.Nodes.Length; i++)
            {
                Node n = g.Nodes[i];
                TensorSpec o = g.Tensors[n.Output];
                LayerRecord? r = Record(m, n);
                w.WriteStartObject();
                w.WriteNumber("index", i);
                w.WriteString("name", n.Name);
                w.WriteString("op", OpNames.Of(n.Kind));
                w.WriteStartArray("shape");
                w.WriteNumberValue(o.Height); w.WriteNumberValue(o.Width); w.WriteNumberValue(o.Channels);
                w.WriteEndArray();
                w.WriteString("type", o.Type == DataType.Int32 ? "int32" : "int8");
                w.WriteNumber("scale", o.Scale);
                w.WriteNumber("zero_point", o.ZeroPoint);
                if (n.WeightScales is not null)
                {
                    w.WriteStartArray("weight_scales");
                    foreach (double s in n.WeightScales) w.WriteNumberValue(s);
                    w.WriteEndArray();
                }
                if (n.Kind is OpKind.Conv2D or OpKind.DepthwiseConv2D or OpKind.PointwiseConv2D)
                {
                    w.WriteStartArray("kernel_size"); w.WriteNumberValue(n.KernelHeight); w.WriteNumberValue(n.KernelWidth); w.WriteEndArray();
                    w.WriteStartArray("stride"); w.WriteNumberValue(n.StrideHeight); w.WriteNumberValue(n.StrideWidth); w.WriteEndArray();
                    w.WriteString("padding", n.Padding == Padding.Valid ? "valid" : "same");
                }
                w.WriteStartArray("clamp"); w.WriteNumberValue(n.ClampMin); w.WriteNumberValue(n.ClampMax); w.WriteEndArray();
                w.WriteString("reparameterisation", n.Reparameterisation);
                w.WriteString("kernel", n.Kernel);
                w.WriteBoolean("needs_dequantize", r?.NeedsDequantize ?? false);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteStartObject("metrics");
            foreach (var (key, value) in m.Metrics.OrderBy(kv => kv.Key, StringComparer.Ordinal)) w.WriteNumber(key, value);
            w.WriteEndObject();
            Calibration c = m.Calibration;
            w.WriteStartObject("calibration");
            w.WriteNumber("readout_window", c.ReadoutWindow);
            w.WriteStartArray("thresholds"); foreach (int t in c.Thresholds) w.WriteNumberValue(t); w.WriteEndArray();
            w.WriteNumber("beta", c.Beta);
            w.WriteStartArray("step_weights"); foreach (double s in c.StepWeights) w.WriteNumberValue(s); w.WriteEndArray();
            w.WriteNumber("tiling_tau", c.TilingTau);
            w.WriteNumber("referral_threshold", c.ReferralThreshold);
            w.WriteNumber("saliency_flat_cv", c.SaliencyFlatCv);
            w.WriteEndObject();
            w.WriteNumber("golden_vectors", m.Golden.Length);
            w.WriteStartObject("provenance");
            foreach (var (key, value) in m.Provenance.OrderBy(kv => kv.Key, StringComparer.Ordinal)) w.WriteString(key, value);
            w.WriteEndObject();
            w.WriteStartObject("akd1000");
            w.WriteBoolean("pass", profile.Count == 0);
            w.WriteStartArray("violations"); foreach (string v in profile) w.WriteStringValue(v); w.WriteEndArray();
            w.WriteEndObject();
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(stream.ToArray());
    }

    private static string ProfileName(ModelManifest m) => m.Profile == Model.QuantizationProfile.Akd1000 ? "akd1000" : "paper8";

    private static long ParameterCount(ModelGraph g) =>
        g.Nodes.Sum(n => (long)(n.Weights?.Length ?? 0) + (n.Bias?.Length ?? 0));

    /// <summary>Multiply-accumulates of one inference (weighted operators only).</summary>
    internal static long Macs(ModelGraph g)
    {
        long macs = 0;
        foreach (Node n in g.Nodes)
        {
            if (n.Weights is null) continue;
            TensorSpec o = g.Tensors[n.Output];
            macs += n.Kind == OpKind.Dense ? n.Weights.LongLength : (long)o.Height * o.Width * n.Weights.LongLength;
        }
        return macs;
    }
}
