using QanaEdge.Model.Graph;
using QanaEdge.TestSupport;

namespace QanaEdge.Imaging.Tests;

public class SaliencyTests
{
    private static SaliencyMap Map(int w, int h, CropBox region, Func<int, int, float> f)
    {
        var v = new float[w * h];
        for (int y = 0; y < h; y++) for (int x = 0; x < w; x++) v[y * w + x] = f(x, y);
        return new SaliencyMap(w, h, v, region);
    }

    [Fact]
    public void Grad_cam_weights_channels_by_the_mean_gradient_and_rectifies()
    {
        // Feature 1×2×2 (two cells, two channels), scale 0.5, zero point −10.
        var spec = new TensorSpec { Name = "f", Height = 1, Width = 2, Channels = 2, Scale = 0.5, ZeroPoint = -10 };
        sbyte[] a = [-10, 10,   // cell 0: channel values (real) 0, 10
                     30, -20];  // cell 1: 20, −5
        sbyte[] w = [4, -2,     // weights at cell 0 for channels 0, 1
                     2, 6];     // at cell 1
        // α_0 = (4 + 2)/2 = 3, α_1 = (−2 + 6)/2 = 2.
        // cell 0: 3·0 + 2·10 = 20; cell 1: 3·20 + 2·(−5) = 50.
        var map = new float[2];
        GradCam.Compute(a, spec, w, map);
        Assert.Equal([20f, 50f], map);
        // Negative evidence is cut to zero.
        sbyte[] negative = [-4, 2, -2, -6];
        GradCam.Compute(a, spec, negative, map);
        Assert.Equal([0f, 0f], map);
    }

    [Fact]
    public void Grad_cam_of_a_pooled_head_weights_channels_by_their_head_weights()
    {
        // The same 1×2×2 feature map; a pooled head has one weight per channel: α = (3, 2) as above, the same map.
        var spec = new TensorSpec { Name = "f", Height = 1, Width = 2, Channels = 2, Scale = 0.5, ZeroPoint = -10 };
        sbyte[] a = [-10, 10, 30, -20];
        var map = new float[2];
        GradCam.Compute(a, spec, [3, 2], map);
        Assert.Equal([20f, 50f], map);
        GradCam.Compute(a, spec, [-1, 1], map);   // cell 0: 10; cell 1: −20 − 5 → 0
        Assert.Equal([10f, 0f], map);
        Assert.Throws<ArgumentException>(() => GradCam.Compute(a, spec, [1, 2, 3], map));
    }

    [Fact]
    public void The_head_of_the_qana_network_reads_an_8x8x128_feature_map()
    {
        var package = TestGraphs.QanaShaped(1);
        HeadInfo head = Assert.IsType<HeadInfo>(HeadInfo.Find(package.Graph));
        Assert.Equal((8, 8, 128), (head.Feature.Height, head.Feature.Width, head.Feature.Channels));
        Assert.False(head.Pooled);
        Assert.Equal(head.FeatureTensor, head.InputTensor);
        Assert.Equal(8 * 8 * 128, head.RowLength);
        Assert.Equal(OpKind.Dense, head.Head.Kind);
        Assert.Equal(package.Graph.LogitsTensor, head.Head.Output);
    }

    [Fact]
    public void A_peak_off_centre_gives_a_tight_square_around_its_region()
    {
        // 224 × 224 image, 8 × 8 map (28-pixel cells), a 2 × 2 hot block at cells x 5–6, y 1–2:
        // region [140, 196) × [28, 84), 56 px → ×1.2 = 67 px, under the 112-px minimum (half the short side),
        // so the side is 112, centred on (168, 56) → x 112, y 0.
        SaliencyMap map = Map(8, 8, new CropBox(0, 0, 224), (x, y) => x is 5 or 6 && y is 1 or 2 ? 10f : 1f);
        CropDecision d = SaliencyCrop.Choose(map, 224, 224, flatCv: 0.15);
        Assert.Equal(CropReason.Saliency, d.Reason);
        Assert.Equal(new CropBox(112, 0, 112), d.Crop);
    }

    [Fact]
    public void A_large_region_sets_the_side_and_weak_cells_elsewhere_are_ignored()
    {
        // Hot block x 0–4, y 0–3 on a 224 map: 140 × 112 px → side 140·1.2 = 168, centred on (70, 56) → clamped
        // to the image at x 0, y 0. A lone cell at half the peak far away is not connected: it does not count.
        SaliencyMap map = Map(8, 8, new CropBox(0, 0, 224), (x, y) =>
            x <= 4 && y <= 3 ? (x == 1 && y == 1 ? 12f : 9f) : x == 7 && y == 7 ? 8f : 0.5f);
        CropDecision d = SaliencyCrop.Choose(map, 224, 224, 0.15);
        Assert.Equal(CropReason.Saliency, d.Reason);
        Assert.Equal(new CropBox(0, 0, 168), d.Crop);
    }

    [Fact]
    public void On_a_wide_image_the_map_covers_the_centred_square_and_the_crop_stays_inside()
    {
        // 300 × 200 image: the map lies over the centred square (50, 0, 200), 25-px cells; hot cell (7, 0)
        // → region [225, 250) × [0, 25), side 100 (minimum), centred on (237.5, 12.5) → x 187.5 → 188, y 0.
        SaliencyMap map = Map(8, 8, new CropBox(50, 0, 200), (x, y) => x == 7 && y == 0 ? 5f : 0.2f);
        CropDecision d = SaliencyCrop.Choose(map, 300, 200, 0.15);
        Assert.Equal(CropReason.Saliency, d.Reason);
        Assert.Equal(new CropBox(188, 0, 100), d.Crop);
        Assert.True(d.Crop.X + d.Crop.Size <= 300);
    }

    [Theory]
    [InlineData(3, 3)]
    [InlineData(4, 4)]
    [InlineData(3, 4)]
    public void A_peak_within_ten_percent_of_the_centre_falls_back_to_the_centred_crop(int px, int py)
    {
        SaliencyMap map = Map(8, 8, new CropBox(0, 0, 224), (x, y) => x == px && y == py ? 10f : 1f);
        CropDecision d = SaliencyCrop.Choose(map, 224, 224, 0.15);
        Assert.Equal(CropReason.PeakNearCentre, d.Reason);
        Assert.Equal(CropBox.CenteredSquare(224, 224), d.Crop);
    }

    [Fact]
    public void The_next_ring_of_cells_is_not_the_centre()
    {
        // Cell 2 has its centre at 2.5/8 = 31% of the side: 19% from the centre, over the 10% tolerance.
        SaliencyMap map = Map(8, 8, new CropBox(0, 0, 224), (x, y) => x == 2 && y == 3 ? 10f : 1f);
        Assert.Equal(CropReason.Saliency, SaliencyCrop.Choose(map, 224, 224, 0.15).Reason);
    }

    [Fact]
    public void A_flat_map_falls_back_to_the_centred_crop()
    {
        // Values 1.0 and 1.2 alternating: mean 1.1, σ 0.1, CV 0.09 < 0.15.
        SaliencyMap flat = Map(8, 8, new CropBox(0, 0, 150), (x, y) => (x + y) % 2 == 0 ? 1f : 1.2f);
        Assert.InRange(flat.CoefficientOfVariation(), 0.0908, 0.0910);
        CropDecision d = SaliencyCrop.Choose(flat, 150, 150, 0.15);
        Assert.Equal(CropReason.FlatMap, d.Reason);
        Assert.Equal(new CropBox(0, 0, 150), d.Crop);
        // The same map is not flat under a lower threshold.
        Assert.NotEqual(CropReason.FlatMap, SaliencyCrop.Choose(flat, 150, 150, 0.05).Reason);
        // An all-zero map (no positive evidence anywhere) is flat.
        SaliencyMap zero = Map(8, 8, new CropBox(0, 0, 150), (_, _) => 0f);
        Assert.Equal(CropReason.FlatMap, SaliencyCrop.Choose(zero, 150, 150, 0.15).Reason);
    }

    /// <summary>
    /// A map without variation has no peak, whatever the package's flatness threshold: with a threshold of 0 (valid: no
    /// map is too flat by its spread) an all-zero or constant map took its first cell, the top-left corner, for the peak,
    /// and reported a "saliency" crop, which was the whole view again, at the cost of a second run.
    /// </summary>
    [Theory]
    [InlineData(0f)]
    [InlineData(0.7f)]
    public void A_map_without_variation_is_flat_even_under_a_threshold_of_zero(float value)
    {
        SaliencyMap map = Map(8, 8, new CropBox(0, 0, 150), (_, _) => value);
        Assert.Equal(0, map.CoefficientOfVariation());
        CropDecision d = SaliencyCrop.Choose(map, 150, 150, 0);
        Assert.Equal(CropReason.FlatMap, d.Reason);
        Assert.Equal(new CropBox(0, 0, 150), d.Crop);
        // A map with a peak is not flat under that threshold.
        Assert.Equal(CropReason.Saliency, SaliencyCrop.Choose(Map(8, 8, new CropBox(0, 0, 150), (x, y) => x == 1 && y == 1 ? 2f : value), 150, 150, 0).Reason);
    }

    [Fact]
    public void Tiles_are_four_overlapping_squares_covering_the_view()
    {
        CropBox[] tiles = Tiling.Tiles(new CropBox(10, 20, 180));
        // t = 180 / 1.8 = 100; the far tiles start at 180 − 100 = 80; adjacent tiles share 20 px = 20% of t.
        Assert.Equal(
            [new CropBox(10, 20, 100), new CropBox(90, 20, 100), new CropBox(10, 100, 100), new CropBox(90, 100, 100)],
            tiles);
        Assert.Equal(20, tiles[0].X + tiles[0].Size - tiles[1].X);
        CropBox[] odd = Tiling.Tiles(new CropBox(0, 0, 150));
        Assert.Equal(83, odd[0].Size); // 150 / 1.8 = 83.3
        Assert.Equal(150, odd[3].X + odd[3].Size);
        Assert.Equal(150, odd[3].Y + odd[3].Size);
    }

    [Fact]
    public void Colour_gains_scale_round_and_clamp()
    {
        byte[] px = [100, 100, 100, 201, 3, 255];
        Preprocessor.ApplyColorGains(px, [1.1f, 0.5f, 1f]);
        // 110, 50, 100; 221.1 → 221, 1.5 → 2 (half away from zero), 255.
        Assert.Equal(new byte[] { 110, 50, 100, 221, 2, 255 }, px);
        byte[] bright = [250, 0, 0];
        Preprocessor.ApplyColorGains(bright, [1.5f, 1f, 1f]);
        Assert.Equal(255, bright[0]);
        Assert.Throws<ArgumentOutOfRangeException>(() => Preprocessor.ApplyColorGains(px, [0f, 1f, 1f]));
    }
}
