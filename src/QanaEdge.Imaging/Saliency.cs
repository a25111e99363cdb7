using QanaEdge.Model.Graph;
using QanaEdge.Model.Packaging;

namespace QanaEdge.Imaging;

/// <summary>Why a crop was chosen. Stable names (see <see cref="CropReasons.Code"/>): they appear in results.</summary>
public enum CropReason
{
    /// <summary>Tight square around the top-activated region of the Grad-CAM map.</summary>
    Saliency = 1,
    /// <summary>Fallback: the map's peak lies within 10% of the image centre.</summary>
    PeakNearCentre = 2,
    /// <summary>Fallback: the map is flat (coefficient of variation under the manifest's threshold).</summary>
    FlatMap = 3,
    /// <summary>Fallback: no map could be computed (the engine exposes no activations, or the head has no spatial input).</summary>
    NoSaliencyMap = 4,
    /// <summary>Centred square crop asked for (saliency switched off).</summary>
    Centred = 5,
}

public static class CropReasons
{
    public static string Code(CropReason reason) => reason switch
    {
        CropReason.Saliency => "saliency",
        CropReason.PeakNearCentre => "peak_near_centre",
        CropReason.FlatMap => "flat_map",
        CropReason.NoSaliencyMap => "no_saliency_map",
        CropReason.Centred => "centred",
        _ => "unknown",
    };
}

/// <summary>
/// A coarse Grad-CAM map (<see cref="Height"/> × <see cref="Width"/> cells, row-major, ≥ 0) laid over
/// <see cref="Region"/> of the image: the square the network looked at when the map was computed.
/// </summary>
public sealed class SaliencyMap
{
    public SaliencyMap(int width, int height, float[] values, CropBox region)
    {
        if (width <= 0 || height <= 0 || values.Length != width * height)
            throw new ArgumentException($"a {width}x{height} map needs {width * height} values, got {values.Length}", nameof(values));
        Width = width;
        Height = height;
        Values = values;
        Region = region;
    }

    public int Width { get; }
    public int Height { get; }
    public float[] Values { get; }
    public CropBox Region { get; }

    public float this[int x, int y] => Values[y * Width + x];

    /// <summary>Coefficient of variation σ/μ of the cells (population σ); 0 for an all-zero map.</summary>
    public double CoefficientOfVariation() => CoefficientOfVariation(Values);

    /// <summary>The same for map cells held outside a <see cref="SaliencyMap"/> (the classifier's own buffer).</summary>
    public static double CoefficientOfVariation(ReadOnlySpan<float> values)
    {
        double mean = 0;
        foreach (float v in values) mean += v;
        mean /= values.Length;
        if (mean <= 0) return 0;
        double var = 0;
        foreach (float v in values) var += (v - mean) * (v - mean);
        return Math.Sqrt(var / values.Length) / mean;
    }
}

/// <summary>Where the head of a package reads its spatial features: what Grad-CAM needs.</summary>
public sealed class HeadInfo
{
    private HeadInfo(int featureTensor, TensorSpec feature, int inputTensor, bool pooled, Node head)
    {
        FeatureTensor = featureTensor;
        Feature = feature;
        InputTensor = inputTensor;
        Pooled = pooled;
        Head = head;
    }

    /// <summary>Index of the last H×W×C tensor before the head: the map Grad-CAM lays over the image.</summary>
    public int FeatureTensor { get; }
    public TensorSpec Feature { get; }
    /// <summary>
    /// Index of the tensor whose bytes are the Dense input (the head's input seen through its Reshape views):
    /// the feature map itself for a flattened head, the global-average-pool output for a pooled one.
    /// </summary>
    public int InputTensor { get; }
    /// <summary>The head reads the global average of the feature map (weights [classes, C]) rather than the whole map.</summary>
    public bool Pooled { get; }
    /// <summary>The Dense node producing the logits; weights [classes, H·W·C] in HWC order, or [classes, C] when pooled.</summary>
    public Node Head { get; }
    /// <summary>Length of one class's weight row.</summary>
    public int RowLength => Pooled ? Feature.Channels : Feature.Length;

    /// <summary>
    /// The head of a graph whose logits come from Dense(Reshape(feature map)) or Dense(Reshape(GlobalAvgPool(feature
    /// map))), or null (then no Grad-CAM).
    /// </summary>
    public static HeadInfo? Find(ModelGraph graph)
    {
        Node? head = graph.Nodes.FirstOrDefault(n => n.Output == graph.LogitsTensor);
        if (head is null || head.Kind != OpKind.Dense || head.Weights is null || head.Inputs.Length != 1) return null;
        int flat = head.Inputs[0];
        // Follow views (Reshape) back to the tensor that holds the head's input bytes.
        int input = flat;
        for (Node? view = Producer(graph, input); view is { Kind: OpKind.Reshape }; view = Producer(graph, input))
            input = view.Inputs[0];
        int feature = input;
        bool pooled = false;
        if (Producer(graph, input) is { Kind: OpKind.GlobalAvgPool } pool)
        {
            feature = pool.Inputs[0];
            pooled = true;
        }
        TensorSpec spec = graph.Tensors[feature];
        if (spec.Height * spec.Width < 2) return null;
        int row = pooled ? spec.Channels : spec.Length;
        if (graph.Tensors[flat].Length != row || head.Weights.Length != graph.Tensors[graph.LogitsTensor].Length * row) return null;
        return new HeadInfo(feature, spec, input, pooled, head);
    }

    private static Node? Producer(ModelGraph graph, int tensor) => graph.Nodes.FirstOrDefault(n => n.Output == tensor);
}

/// <summary>
/// Grad-CAM for a linear head. With logits y = W·flatten(A) + b, the gradient of class k's logit with respect
/// to the feature map A[h,w,c] is W[k, (h·W + w)·C + c] (the head's weight row reshaped to H×W×C). Grad-CAM
/// weights each channel by the spatial mean of that gradient, α_c = mean_{h,w} W[k,h,w,c], and the map is
/// ReLU(Σ_c α_c·A_c) with A dequantized (scale·(q − zero point)). The weight scale of row k is one positive
/// factor and is dropped: it changes neither the peak nor the coefficient of variation.
/// A pooled head, y = W·GAP(A) + b, has the gradient W[k, c]/(H·W) at every cell, so α_c ∝ W[k, c] and the
/// map is the class activation map of Zhou et al. (2016); the row then has C weights.
/// </summary>
public static class GradCam
{
    /// <param name="activation">The feature map, int8 HWC (H·W·C values).</param>
    /// <param name="feature">Its shape and quantization.</param>
    /// <param name="weightRow">Row k of the head's weights, int8: length H·W·C (HWC order), or C for a pooled head.</param>
    /// <param name="map">Output, H·W cells, row-major.</param>
    public static void Compute(ReadOnlySpan<sbyte> activation, TensorSpec feature, ReadOnlySpan<sbyte> weightRow, Span<float> map)
    {
        int c = feature.Channels;
        Compute(activation, feature, weightRow, map, c <= 1024 ? stackalloc double[c] : new double[c]);
    }

    /// <summary>The same with the channel weights α in <paramref name="alpha"/> (C values), so that a caller holding
    /// that buffer allocates nothing whatever the channel count.</summary>
    public static void Compute(ReadOnlySpan<sbyte> activation, TensorSpec feature, ReadOnlySpan<sbyte> weightRow, Span<float> map, Span<double> alpha)
    {
        int h = feature.Height, w = feature.Width, c = feature.Channels, cells = h * w;
        bool pooled = weightRow.Length == c && cells > 1;
        if (activation.Length != feature.Length || (weightRow.Length != feature.Length && !pooled) || map.Length != cells)
            throw new ArgumentException($"feature {h}x{w}x{c}: activation {activation.Length}, weights {weightRow.Length}, map {map.Length}");
        if (alpha.Length < c) throw new ArgumentException($"{c} channel weights need room, the buffer holds {alpha.Length}", nameof(alpha));
        alpha = alpha[..c];
        alpha.Clear();
        if (pooled)
            for (int ch = 0; ch < c; ch++) alpha[ch] = weightRow[ch];
        else
        {
            for (int p = 0; p < cells; p++)
                for (int ch = 0; ch < c; ch++)
                    alpha[ch] += weightRow[p * c + ch];
            for (int ch = 0; ch < c; ch++) alpha[ch] /= cells;
        }
        int zp = feature.ZeroPoint;
        double scale = feature.Scale;
        for (int p = 0; p < cells; p++)
        {
            double sum = 0;
            for (int ch = 0; ch < c; ch++) sum += alpha[ch] * (activation[p * c + ch] - zp);
            map[p] = (float)Math.Max(0, sum * scale);
        }
    }
}

/// <summary>The crop chosen for an image and why.</summary>
public readonly record struct CropDecision(CropBox Crop, CropReason Reason, SaliencyMap? Map)
{
    public string ReasonCode => CropReasons.Code(Reason);
}

/// <summary>Geometry of the saliency crop, from a map to a square box (pure, no engine).</summary>
public static class SaliencyCrop
{
    /// <summary>Cells at or above this fraction of the peak, connected to it, form the top-activated region.</summary>
    public const double RegionFraction = 0.5;
    /// <summary>The peak is "at the centre" when it lies within this fraction of the image's width and height from the centre.</summary>
    public const double CentreTolerance = 0.10;
    /// <summary>Margin added around the region: the crop side is the region's longer side times this.</summary>
    public const double Margin = 1.2;
    /// <summary>The crop is never smaller than this fraction of the image's shorter side: a lesion needs its surrounding skin.</summary>
    public const double MinSideFraction = 0.5;

    /// <summary>Chooses the crop for an image of <paramref name="imageWidth"/> × <paramref name="imageHeight"/> from its map.</summary>
    /// <param name="flatCv">Maps whose coefficient of variation is under this are flat (manifest Calibration.SaliencyFlatCv).</param>
    public static CropDecision Choose(SaliencyMap map, int imageWidth, int imageHeight, double flatCv)
    {
        ArgumentNullException.ThrowIfNull(map);
        int cells = map.Values.Length;
        var (crop, reason) = Choose(map.Values, map.Width, map.Height, map.Region, imageWidth, imageHeight, flatCv,
            new bool[cells], new int[cells]);
        return new CropDecision(crop, reason, map);
    }

    /// <summary>
    /// The same on map cells held in a span (<paramref name="width"/> × <paramref name="height"/>, row-major, laid over
    /// <paramref name="region"/>), with the flood fill's marks and stack in the caller's buffers (at least one entry
    /// per cell each): what the classifier calls with buffers it owns, so choosing a crop allocates nothing.
    /// </summary>
    public static (CropBox Crop, CropReason Reason) Choose(ReadOnlySpan<float> values, int width, int height, CropBox region,
        int imageWidth, int imageHeight, double flatCv, Span<bool> inRegion, Span<int> stack)
    {
        int cells = width * height;
        if (width <= 0 || height <= 0 || values.Length != cells || inRegion.Length < cells || stack.Length < cells)
            throw new ArgumentException($"a {width}x{height} map needs {cells} values, marks and stack entries; got {values.Length}, {inRegion.Length}, {stack.Length}");
        CropBox centred = CropBox.CenteredSquare(imageWidth, imageHeight);
        double cv = SaliencyMap.CoefficientOfVariation(values);
        // A map without variation (all zero, or constant) has no peak: flat whatever the threshold. Under a threshold of
        // 0 it took its first cell for the peak and cropped the whole view again as a "saliency" crop, at a second run.
        if (!(cv > 0) || cv < flatCv)
            return (centred, CropReason.FlatMap);

        int peak = 0;
        for (int i = 1; i < cells; i++)
            if (values[i] > values[peak]) peak = i;
        int px = peak % width, py = peak / width;
        double cellW = (double)region.Size / width, cellH = (double)region.Size / height;
        double peakX = region.X + (px + 0.5) * cellW, peakY = region.Y + (py + 0.5) * cellH;
        if (Math.Abs(peakX - imageWidth / 2.0) <= CentreTolerance * imageWidth &&
            Math.Abs(peakY - imageHeight / 2.0) <= CentreTolerance * imageHeight)
            return (centred, CropReason.PeakNearCentre);

        // The top-activated region: cells ≥ half the peak, 4-connected to the peak (flood fill). A cell is marked
        // before it is pushed, so the stack never holds more than one entry per cell.
        float cut = (float)(RegionFraction * values[peak]);
        inRegion[..cells].Clear();
        int depth = 0;
        stack[depth++] = peak;
        inRegion[peak] = true;
        int x0 = px, x1 = px, y0 = py, y1 = py;
        while (depth > 0)
        {
            int cell = stack[--depth], cx = cell % width, cy = cell / width;
            x0 = Math.Min(x0, cx); x1 = Math.Max(x1, cx); y0 = Math.Min(y0, cy); y1 = Math.Max(y1, cy);
            Span<(int X, int Y)> next = [(cx - 1, cy), (cx + 1, cy), (cx, cy - 1), (cx, cy + 1)];
            foreach (var (nx, ny) in next)
            {
                if (nx < 0 || ny < 0 || nx >= width || ny >= height) continue;
                int n = ny * width + nx;
                if (inRegion[n] || values[n] < cut) continue;
                inRegion[n] = true;
                stack[depth++] = n;
            }
        }
        double left = region.X + x0 * cellW, right = region.X + (x1 + 1) * cellW;
        double top = region.Y + y0 * cellH, bottom = region.Y + (y1 + 1) * cellH;
        return (SquareAround((left + right) / 2, (top + bottom) / 2,
            Math.Max(right - left, bottom - top) * Margin, imageWidth, imageHeight), CropReason.Saliency);
    }

    /// <summary>A square of about <paramref name="side"/> centred on (<paramref name="cx"/>, <paramref name="cy"/>),
    /// clamped to [MinSideFraction·short side, short side] and shifted to lie inside the image.</summary>
    public static CropBox SquareAround(double cx, double cy, double side, int imageWidth, int imageHeight)
    {
        int shortSide = Math.Min(imageWidth, imageHeight);
        int s = (int)Math.Round(Math.Clamp(side, MinSideFraction * shortSide, shortSide), MidpointRounding.AwayFromZero);
        s = Math.Clamp(s, 1, shortSide);
        int x = (int)Math.Round(cx - s / 2.0, MidpointRounding.AwayFromZero);
        int y = (int)Math.Round(cy - s / 2.0, MidpointRounding.AwayFromZero);
        return new CropBox(Math.Clamp(x, 0, imageWidth - s), Math.Clamp(y, 0, imageHeight - s), s);
    }
}

/// <summary>Tiling fallback geometry: four overlapping tiles (2×2) of a square view.</summary>
public static class Tiling
{
    /// <summary>Adjacent tiles share this fraction of a tile's side.</summary>
    public const double Overlap = 0.2;

    /// <summary>Top-left, top-right, bottom-left, bottom-right tiles of <paramref name="view"/>: side t with
    /// 2t − overlap·t = S, i.e. t = S / 1.8 rounded, flush with the view's edges.</summary>
    public static CropBox[] Tiles(CropBox view)
    {
        var tiles = new CropBox[Count];
        Tiles(view, tiles);
        return tiles;
    }

    /// <summary>Number of tiles (<see cref="Tiles(CropBox)"/>).</summary>
    public const int Count = 4;

    /// <summary>The same tiles written into <paramref name="tiles"/> (at least <see cref="Count"/> entries), for a caller
    /// that keeps them on its stack: the classifier's fallback allocates nothing.</summary>
    public static void Tiles(CropBox view, Span<CropBox> tiles)
    {
        if (tiles.Length < Count) throw new ArgumentException($"{Count} tiles need room, the span holds {tiles.Length}", nameof(tiles));
        int t = Math.Clamp((int)Math.Round(view.Size / (2 - Overlap), MidpointRounding.AwayFromZero), 1, view.Size);
        int far = view.Size - t;
        tiles[0] = new CropBox(view.X, view.Y, t);
        tiles[1] = new CropBox(view.X + far, view.Y, t);
        tiles[2] = new CropBox(view.X, view.Y + far, t);
        tiles[3] = new CropBox(view.X + far, view.Y + far, t);
    }
}
