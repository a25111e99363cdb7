using System.Runtime.InteropServices;
using System.Security.Cryptography;
using QanaEdge.Model.Graph;

namespace QanaEdge.Model.Packaging;

/// <summary>
/// Readout updates: packages of kind <see cref="PackageKind.ReadoutUpdate"/> that replace only a model's
/// head (the dense node producing the logits) and its spiking readout, as learned on the device. A learner
/// key may sign them; the backbone can never change this way (the validator allows only dense, reshape
/// and readout nodes in an update).
/// </summary>
public static class ReadoutUpdates
{
    /// <summary>The head of a model: the dense node that writes the logits tensor.</summary>
    public static Node Head(ModelPackage model)
    {
        Node? head = model.Graph.Nodes.FirstOrDefault(n => n.Output == model.Graph.LogitsTensor);
        if (head is null || head.Kind != OpKind.Dense)
            throw new PackageFormatException($"model '{model.Manifest.ModelId}': the logits are not produced by a dense node, so it has no replaceable readout");
        return head;
    }

    /// <summary>
    /// SHA-256 (hex) of everything that decides a model's head input: the input contract (shape, colour gains, crop)
    /// and every tensor and node of the graph except the head, the logits and the spiking readout. A readout update
    /// leaves it unchanged, so head inputs recorded under one model stay valid training cases for any readout of it;
    /// a model update (a new backbone) changes it.
    /// </summary>
    public static string BackboneDigest(ModelPackage model)
    {
        ArgumentNullException.ThrowIfNull(model);
        ModelGraph g = model.Graph;
        Node head = Head(model);
        using var bytes = new MemoryStream();
        using var w = new BinaryWriter(bytes);
        InputSpec input = model.Manifest.Input;
        w.Write(input.Height); w.Write(input.Width); w.Write(input.Channels); w.Write(input.Crop);
        foreach (float gain in input.ColorGains) w.Write(gain);
        var readoutOutputs = g.Nodes.Where(n => n.Kind == OpKind.SpikingReadout).Select(n => n.Output).ToHashSet();
        for (int i = 0; i < g.Tensors.Length; i++)
        {
            if (i == g.LogitsTensor || readoutOutputs.Contains(i)) continue;
            TensorSpec t = g.Tensors[i];
            w.Write(i); w.Write(t.Height); w.Write(t.Width); w.Write(t.Channels); w.Write((int)t.Type); w.Write(t.Scale); w.Write(t.ZeroPoint);
        }
        foreach (Node n in g.Nodes)
        {
            if (n == head || n.Kind == OpKind.SpikingReadout) continue;
            w.Write(n.Name); w.Write((int)n.Kind); w.Write(n.Output);
            foreach (int i in n.Inputs) w.Write(i);
            w.Write(n.KernelHeight); w.Write(n.KernelWidth); w.Write(n.StrideHeight); w.Write(n.StrideWidth); w.Write((int)n.Padding);
            w.Write(n.ClampMin); w.Write(n.ClampMax);
            WriteArray(w, n.Weights);
            WriteArray(w, n.Table);
            WriteArray(w, n.WeightScales);
            WriteArray(w, n.Bias);
        }
        w.Flush();
        return Convert.ToHexStringLower(SHA256.HashData(bytes.GetBuffer().AsSpan(0, (int)bytes.Length)));
    }

    private static void WriteArray<T>(BinaryWriter w, T[]? values) where T : unmanaged
    {
        w.Write(values?.Length ?? -1);
        if (values is not null) w.Write(MemoryMarshal.AsBytes(values.AsSpan()));
    }

    /// <summary>
    /// Builds a readout update for <paramref name="model"/> with new head parameters (layout [Out, In],
    /// as the model's head) and, optionally, new readout thresholds and calibration. The update's graph is
    /// head input → dense → logits → readout; its quantization is the model's. <paramref name="golden"/> are
    /// self-test vectors of the update's own graph (head inputs with the new head's logits): a device runs them
    /// before it swaps the readout in.
    /// </summary>
    public static ModelPackage Create(ModelPackage model, string version, sbyte[] weights, double[] weightScales, int[] bias,
        int[]? thresholds = null, Calibration? calibration = null, IReadOnlyDictionary<string, double>? metrics = null,
        GoldenVector[]? golden = null)
    {
        ModelGraph g = model.Graph;
        Node head = Head(model);
        Node? readout = g.Nodes.FirstOrDefault(n => n.Kind == OpKind.SpikingReadout);
        TensorSpec input = g.Tensors[head.Inputs[0]];
        var tensors = new List<TensorSpec>
        {
            new() { Name = input.Name, Height = input.Height, Width = input.Width, Channels = input.Channels, Scale = input.Scale, ZeroPoint = input.ZeroPoint },
            g.Tensors[g.LogitsTensor],
        };
        var nodes = new List<Node>
        {
            new()
            {
                Name = head.Name, Kind = OpKind.Dense, Inputs = [0], Output = 1, Weights = weights, WeightScales = weightScales, Bias = bias,
                ClampMin = head.ClampMin, ClampMax = head.ClampMax, Reparameterisation = head.Reparameterisation, Kernel = head.Kernel,
            },
        };
        if (readout is not null)
        {
            tensors.Add(g.Tensors[readout.Output]);
            nodes.Add(new Node
            {
                Name = readout.Name, Kind = OpKind.SpikingReadout, Inputs = [1], Output = 2,
                TimeSteps = calibration?.ReadoutWindow ?? readout.TimeSteps, Thresholds = thresholds ?? readout.Thresholds,
            });
        }
        var update = new ModelPackage
        {
            Manifest = new ModelManifest
            {
                ModelId = UpdateId(model.Manifest.ModelId),
                Version = version,
                Kind = PackageKind.ReadoutUpdate,
                BaseModelId = model.Manifest.ModelId,
                BaseModelVersion = model.Manifest.Version,
                CreatedUtc = DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ", System.Globalization.CultureInfo.InvariantCulture),
                Classes = model.Manifest.Classes,
                Input = model.Manifest.Input,
                Profile = model.Manifest.Profile,
                Calibration = calibration ?? model.Manifest.Calibration,
                Metrics = metrics is null ? [] : new Dictionary<string, double>(metrics),
                Golden = golden ?? [],
            },
            Graph = new ModelGraph { Tensors = tensors.ToArray(), Nodes = nodes.ToArray(), InputTensor = 0, LogitsTensor = 1, OutputTensor = readout is null ? 1 : 2 },
        };
        PackageValidator.Validate(update);
        return update;
    }

    /// <summary>
    /// The model id of a readout update of the model <paramref name="modelId"/>: the model's id with <c>-readout</c>,
    /// or the model's id alone when that would pass <see cref="PackageLimits.MaxNameLength"/>. No check reads it (the
    /// update names its model in <c>baseModelId</c>); it tells a reader what the package is. Always suffixed, a valid
    /// model with an id of 249 to 256 characters got an update the validator refused, so no readout of it could be made,
    /// and the device's learning failed at every label.
    /// </summary>
    public static string UpdateId(string modelId)
        => modelId.Length + ReadoutSuffix.Length <= PackageLimits.MaxNameLength ? modelId + ReadoutSuffix : modelId;

    private const string ReadoutSuffix = "-readout";

    /// <summary>
    /// The model with the update's head and readout in place. The update must name this model (id and
    /// version) and fit it exactly: same head input (shape and quantization), the same classes in the same order.
    /// The result's version is the update's; its golden self-test vectors are dropped, since their
    /// expected logits belong to the old head (the update's own golden vectors are head inputs, for its graph).
    /// </summary>
    public static ModelPackage Apply(ModelPackage model, ModelPackage update) => Apply(model, update, exactBase: true);

    /// <summary>
    /// <see cref="Apply"/> for an update made for a later version of <paramref name="model"/> (same model id) than
    /// the model itself: a readout learned on top of earlier readout updates of it. Since an update replaces the whole
    /// head and readout, the updates between add nothing to the result, which is the model <see cref="Apply"/> gives
    /// over them (its provenance names the base the update was made for). Whether the update may skip them is the
    /// caller's judgement (the daemon allows it for readouts its own learning superseded and pruned).
    /// </summary>
    public static ModelPackage ApplyOverEarlierBase(ModelPackage model, ModelPackage update) => Apply(model, update, exactBase: false);

    private static ModelPackage Apply(ModelPackage model, ModelPackage update, bool exactBase)
    {
        PackageValidator.Validate(model);
        PackageValidator.Validate(update);
        ModelManifest um = update.Manifest;
        if (um.Kind != PackageKind.ReadoutUpdate) throw new PackageFormatException($"'{um.ModelId}' is not a readout update");
        if (model.Manifest.Kind != PackageKind.Model) throw new PackageFormatException("a readout update applies to a model, not to another update");
        if (um.BaseModelId != model.Manifest.ModelId || (exactBase && um.BaseModelVersion != model.Manifest.Version))
            throw new PackageFormatException($"update '{um.ModelId}' {um.Version} is for {um.BaseModelId} {um.BaseModelVersion}, not {model.Manifest.ModelId} {model.Manifest.Version}");

        ModelGraph g = model.Graph, ug = update.Graph;
        Node head = Head(model);
        Node[] denseNodes = ug.Nodes.Where(n => n.Kind == OpKind.Dense).ToArray();
        if (denseNodes.Length != 1 || denseNodes[0].Output != ug.LogitsTensor)
            throw new PackageFormatException($"update '{um.ModelId}': must hold exactly one dense node, producing the logits (it holds {denseNodes.Length} dense nodes)");
        Node newHead = denseNodes[0];
        TensorSpec oldIn = g.Tensors[head.Inputs[0]], newIn = ug.Tensors[newHead.Inputs[0]];
        if (newIn.Height * newIn.Width * newIn.Channels != oldIn.Height * oldIn.Width * oldIn.Channels || newIn.Scale != oldIn.Scale || newIn.ZeroPoint != oldIn.ZeroPoint)
            throw new PackageFormatException($"update '{um.ModelId}': its head input ({newIn}) does not match the model's ({oldIn})");
        TensorSpec oldLogits = g.Tensors[g.LogitsTensor], newLogits = ug.Tensors[ug.LogitsTensor];
        int newClasses = newLogits.Height * newLogits.Width * newLogits.Channels, oldClasses = oldLogits.Height * oldLogits.Width * oldLogits.Channels;
        if (newClasses != oldClasses)
            throw new PackageFormatException($"update '{um.ModelId}': {newClasses} logits, the model has {oldClasses}");
        // The result keeps the model's class names, so the update's logits must mean the same classes in the same order:
        // with only the count compared, an update ordered otherwise applied and every result carried the wrong names.
        for (int k = 0; k < newClasses; k++)
            if (um.Classes[k] != model.Manifest.Classes[k])
                throw new PackageFormatException($"update '{um.ModelId}': its classes differ from the model's (class {k} is '{um.Classes[k]}', the model's '{model.Manifest.Classes[k]}')");
        Node? newReadout = ug.Nodes.FirstOrDefault(n => n.Kind == OpKind.SpikingReadout);

        var tensors = (TensorSpec[])g.Tensors.Clone();
        tensors[g.LogitsTensor] = new TensorSpec
        {
            Name = oldLogits.Name, Height = oldLogits.Height, Width = oldLogits.Width, Channels = oldLogits.Channels,
            Type = oldLogits.Type, Scale = newLogits.Scale, ZeroPoint = newLogits.ZeroPoint,
        };
        var nodes = g.Nodes.Select(n =>
            n == head ? new Node
            {
                Name = n.Name, Kind = OpKind.Dense, Inputs = n.Inputs, Output = n.Output,
                Weights = newHead.Weights, WeightScales = newHead.WeightScales, Bias = newHead.Bias,
                ClampMin = newHead.ClampMin, ClampMax = newHead.ClampMax,
                Reparameterisation = newHead.Reparameterisation, Kernel = newHead.Kernel,
            }
            : n.Kind == OpKind.SpikingReadout && newReadout is not null ? new Node
            {
                Name = n.Name, Kind = OpKind.SpikingReadout, Inputs = n.Inputs, Output = n.Output,
                TimeSteps = newReadout.TimeSteps, Thresholds = newReadout.Thresholds,
            }
            : n).ToArray();

        ModelManifest m = model.Manifest;
        var provenance = new Dictionary<string, string>(m.Provenance)
        {
            ["readout_update"] = $"{um.ModelId} {um.Version}",
            // The version the update was made for: the model's own, unless earlier updates were skipped.
            ["base_version"] = um.BaseModelVersion ?? m.Version,
        };
        var result = new ModelPackage
        {
            Manifest = new ModelManifest
            {
                ModelId = m.ModelId, Version = um.Version, Kind = PackageKind.Model, CreatedUtc = um.CreatedUtc,
                Classes = m.Classes, Input = m.Input, Profile = m.Profile, Layers = m.Layers,
                ConversionSuccessRate = m.ConversionSuccessRate,
                Metrics = um.Metrics.Count > 0 ? um.Metrics : m.Metrics,
                Calibration = um.Calibration, Golden = [], Provenance = provenance,
            },
            Graph = new ModelGraph { Tensors = tensors, Nodes = nodes, InputTensor = g.InputTensor, LogitsTensor = g.LogitsTensor, OutputTensor = g.OutputTensor },
        };
        PackageValidator.Validate(result);
        return result;
    }
}
