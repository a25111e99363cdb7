using QanaEdge.Model.Graph;

namespace QanaEdge.Model.Packaging;

/// <summary>
/// Validates a whole package: the graph (<see cref="GraphValidator"/>) and the manifest against it.
/// <see cref="PackageReader"/> runs it on every load and <see cref="PackageWriter"/> before every save,
/// so a package that cannot be loaded is never written.
/// </summary>
public static class PackageValidator
{
    public static void Validate(ModelPackage package)
    {
        if (package is null) throw new PackageFormatException("package: missing");
        GraphValidator.Validate(package.Graph);
        ValidateManifest(package.Manifest, package.Graph);
    }

    private static void ValidateManifest(ModelManifest m, ModelGraph graph)
    {
        if (m is null) throw new PackageFormatException("manifest: missing");
        Text("modelId", m.ModelId, required: true);
        Text("version", m.Version, required: true);
        Text("createdUtc", m.CreatedUtc, required: false);
        if (!Enum.IsDefined(m.Profile)) throw new PackageFormatException($"manifest: profile: unknown value {(int)m.Profile}");
        if (!Enum.IsDefined(m.Kind)) throw new PackageFormatException($"manifest: kind: unknown value {(int)m.Kind}");

        TensorSpec logits = graph.Tensors[graph.LogitsTensor];
        long k = (long)logits.Height * logits.Width * logits.Channels;
        if (m.Classes is null) throw new PackageFormatException("manifest: classes missing");
        if (m.Classes.Length != k)
            throw new PackageFormatException($"manifest: classes: {m.Classes.Length} names for {k} logits");
        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < m.Classes.Length; i++)
        {
            Text($"classes[{i}]", m.Classes[i], required: true);
            if (!seen.Add(m.Classes[i])) throw new PackageFormatException($"manifest: classes[{i}]: duplicate '{m.Classes[i]}'");
        }

        TensorSpec input = graph.Tensors[graph.InputTensor];
        if (m.Input is null) throw new PackageFormatException("manifest: input missing");
        // A readout update's graph starts at the backbone's features; its manifest still describes the
        // image input of the base model, so only a full model's input is checked against the graph.
        if (m.Input.Height < 1 || m.Input.Width < 1 || m.Input.Channels < 1 || (long)m.Input.Height * m.Input.Width * m.Input.Channels > PackageLimits.MaxTensorElements)
            throw new PackageFormatException($"manifest: input {m.Input.Height}x{m.Input.Width}x{m.Input.Channels} is not a valid shape");
        if (m.Kind == PackageKind.Model && (m.Input.Height != input.Height || m.Input.Width != input.Width || m.Input.Channels != input.Channels))
            throw new PackageFormatException($"manifest: input {m.Input.Height}x{m.Input.Width}x{m.Input.Channels} differs from the input tensor {input.Height}x{input.Width}x{input.Channels}");
        // Gray-world gains act on the RGB image before it becomes the input tensor: always three.
        if (m.Input.ColorGains is null || m.Input.ColorGains.Length != 3)
            throw new PackageFormatException("manifest: input.colorGains must hold 3 values (R, G, B)");
        foreach (float g in m.Input.ColorGains)
            if (!float.IsFinite(g) || g <= 0) throw new PackageFormatException($"manifest: input.colorGains value {g} must be finite and > 0");
        if (!InputCrop.IsKnown(m.Input.Crop))
            throw new PackageFormatException($"manifest: input.crop '{m.Input.Crop}' is neither '{InputCrop.Centre}' nor '{InputCrop.Saliency}'");

        if (m.Layers is null) throw new PackageFormatException("manifest: layers missing");
        if (m.Layers.Length > PackageLimits.MaxNodes)
            throw new PackageFormatException($"manifest: {m.Layers.Length} layer records exceed the limit of {PackageLimits.MaxNodes}");
        for (int i = 0; i < m.Layers.Length; i++)
        {
            LayerRecord l = m.Layers[i] ?? throw new PackageFormatException($"manifest: layers[{i}] missing");
            string where = $"manifest: layers[{i}]";
            Text($"layers[{i}].name", l.Name, required: true);
            Text($"layers[{i}].op", l.Op, required: true);
            Text($"layers[{i}].reparameterisation", l.Reparameterisation, required: false);
            Text($"layers[{i}].kernel", l.Kernel, required: false);
            GraphValidator.CheckScale(where, "scale", l.Scale);
            if (l.ZeroPoint < sbyte.MinValue || l.ZeroPoint > sbyte.MaxValue)
                throw new PackageFormatException($"{where}: zero point {l.ZeroPoint} outside int8");
        }
        if (!double.IsFinite(m.ConversionSuccessRate) || m.ConversionSuccessRate < 0 || m.ConversionSuccessRate > 1)
            throw new PackageFormatException($"manifest: conversionSuccessRate {m.ConversionSuccessRate} outside [0, 1]");

        if (m.Metrics is null) throw new PackageFormatException("manifest: metrics missing");
        if (m.Metrics.Count > PackageLimits.MaxMapEntries) throw new PackageFormatException($"manifest: more than {PackageLimits.MaxMapEntries} metrics");
        foreach (var (key, value) in m.Metrics)
        {
            Text("metrics key", key, required: true);
            if (!double.IsFinite(value)) throw new PackageFormatException($"manifest: metrics['{key}'] is not finite");
        }
        if (m.Provenance is null) throw new PackageFormatException("manifest: provenance missing");
        if (m.Provenance.Count > PackageLimits.MaxMapEntries) throw new PackageFormatException($"manifest: more than {PackageLimits.MaxMapEntries} provenance entries");
        foreach (var (key, value) in m.Provenance)
        {
            Text("provenance key", key, required: true);
            if (value is null) throw new PackageFormatException($"manifest: provenance['{key}'] missing");
            if (value.Length > 4096) throw new PackageFormatException($"manifest: provenance['{key}'] longer than 4096 characters");
        }

        Node? readout = graph.Nodes.FirstOrDefault(n => n.Kind == OpKind.SpikingReadout);
        ValidateCalibration(m.Calibration, k, readout);
        CheckSoftmaxInputs(m.Calibration, logits, readout);

        if (m.Golden is null) throw new PackageFormatException("manifest: golden missing");
        if (m.Golden.Length > PackageLimits.MaxGoldenVectors)
            throw new PackageFormatException($"manifest: {m.Golden.Length} golden vectors exceed the limit of {PackageLimits.MaxGoldenVectors}");
        long inputLength = (long)input.Height * input.Width * input.Channels;
        for (int i = 0; i < m.Golden.Length; i++)
        {
            GoldenVector g = m.Golden[i] ?? throw new PackageFormatException($"manifest: golden[{i}] missing");
            if (g.Input is null || g.Input.Length != inputLength)
                throw new PackageFormatException($"manifest: golden[{i}].input must hold {inputLength} values (the input tensor)");
            if (g.ExpectedLogits is null || g.ExpectedLogits.Length != k)
                throw new PackageFormatException($"manifest: golden[{i}].expectedLogits must hold {k} values");
        }

        if (m.Kind == PackageKind.ReadoutUpdate)
        {
            Text("baseModelId", m.BaseModelId, required: true);
            Text("baseModelVersion", m.BaseModelVersion, required: true);
            // A learner key may sign readout updates only; the graph must therefore be nothing more than
            // a readout, or a learner could ship a whole network under that name.
            for (int n = 0; n < graph.Nodes.Length; n++)
                if (graph.Nodes[n].Kind is not (OpKind.Dense or OpKind.Reshape or OpKind.SpikingReadout))
                    throw new PackageFormatException($"manifest: a readout update may hold only dense, reshape and readout nodes; {GraphValidator.Where(n, graph.Nodes[n])} is not one");
        }
        else if (m.BaseModelId is not null || m.BaseModelVersion is not null)
        {
            throw new PackageFormatException("manifest: baseModelId/baseModelVersion belong to readout updates only");
        }
    }

    /// <summary>The calibration's own ranges, and its fit to the graph's readout when there is one: the engines
    /// weight the readout's T steps with <see cref="Calibration.StepWeights"/>, so the window must be the node's.</summary>
    private static void ValidateCalibration(Calibration c, long classes, Node? readout)
    {
        if (c is null) throw new PackageFormatException("manifest: calibration missing");
        if (c.ReadoutWindow < 1 || c.ReadoutWindow > PackageLimits.MaxTimeSteps)
            throw new PackageFormatException($"manifest: calibration.readoutWindow {c.ReadoutWindow} outside [1, {PackageLimits.MaxTimeSteps}]");
        if (readout is not null && c.ReadoutWindow != readout.TimeSteps)
            throw new PackageFormatException($"manifest: calibration.readoutWindow {c.ReadoutWindow} differs from the readout node's time steps {readout.TimeSteps}");
        if (c.Thresholds is null) throw new PackageFormatException("manifest: calibration.thresholds missing");
        // One per class is also one per readout threshold: the graph validator gives the readout one per class.
        if (c.Thresholds.Length != 0 && c.Thresholds.Length != classes)
            throw new PackageFormatException($"manifest: calibration.thresholds has {c.Thresholds.Length} values, must be empty or one per class ({classes})");
        foreach (int t in c.Thresholds)
            if (t <= 0) throw new PackageFormatException($"manifest: calibration.thresholds value {t} must be positive");
        if (!double.IsFinite(c.Beta) || c.Beta <= 0)
            throw new PackageFormatException($"manifest: calibration.beta {c.Beta} must be finite and > 0");
        if (c.StepWeights is null) throw new PackageFormatException("manifest: calibration.stepWeights missing");
        if (c.StepWeights.Length != 0 && c.StepWeights.Length != c.ReadoutWindow)
            throw new PackageFormatException($"manifest: calibration.stepWeights has {c.StepWeights.Length} values, must be empty or readoutWindow ({c.ReadoutWindow})");
        foreach (double w in c.StepWeights)
            if (!double.IsFinite(w)) throw new PackageFormatException("manifest: calibration.stepWeights holds a non-finite value");
        Unit("tilingTau", c.TilingTau);
        Unit("referralThreshold", c.ReferralThreshold);
        if (!double.IsFinite(c.SaliencyFlatCv) || c.SaliencyFlatCv < 0)
            throw new PackageFormatException($"manifest: calibration.saliencyFlatCv {c.SaliencyFlatCv} must be finite and >= 0");
    }

    /// <summary>Largest magnitude a softmax input of the class probabilities may reach (see <see cref="CheckSoftmaxInputs"/>).</summary>
    internal const double MaxSoftmaxInput = 1e300;

    /// <summary>
    /// The class probabilities are a softmax of β·Σ_t w_t·s_k,t with a readout (spikes s are 0 or 1, so at most
    /// β·Σ|w_t|, β·T without step weights), else of the real logits scale·(q − zp) (at most scale·255). Each factor is
    /// finite on its own, yet the product can overflow: the softmax then gives NaN probabilities, which no result
    /// message can carry (JSON has no NaN, and the daemon's worker fails on every image), while the golden vectors,
    /// which compare logits only, still pass. The bound leaves room for any summation order and for the few views the
    /// tiling fallback adds up.
    /// </summary>
    private static void CheckSoftmaxInputs(Calibration c, TensorSpec logits, Node? readout)
    {
        if (readout is null)
        {
            if (logits.Scale * 255 > MaxSoftmaxInput)
                throw new PackageFormatException($"graph: logits scale {logits.Scale} makes the softmax inputs (scale x 255) exceed {MaxSoftmaxInput:G3}; the probabilities would not be finite");
            return;
        }
        double weights = c.StepWeights.Length == 0 ? c.ReadoutWindow : c.StepWeights.Sum(Math.Abs);
        if (c.Beta * weights > MaxSoftmaxInput)
            throw new PackageFormatException($"manifest: calibration.beta {c.Beta} times the step weights (sum of |w_t|: {weights}) exceeds {MaxSoftmaxInput:G3}; the probabilities would not be finite");
    }

    private static void Unit(string field, double value)
    {
        if (!double.IsFinite(value) || value < 0 || value > 1)
            throw new PackageFormatException($"manifest: calibration.{field} {value} outside [0, 1]");
    }

    private static void Text(string field, string? value, bool required)
    {
        if (value is null || (required && value.Length == 0))
            throw new PackageFormatException($"manifest: {field} missing");
        if (value.Length > PackageLimits.MaxNameLength)
            throw new PackageFormatException($"manifest: {field} longer than {PackageLimits.MaxNameLength} characters");
    }
}
