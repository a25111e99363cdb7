using QanaEdge.TestSupport;

namespace QanaEdge.Imaging.Tests;

public class ResamplerTests
{
    private static RgbImage Random(int w, int h, int seed)
    {
        var px = new byte[w * h * 3];
        new Random(seed).NextBytes(px);
        return new RgbImage(w, h, px);
    }

    [Theory]
    [InlineData(224, 64)]
    [InlineData(150, 64)]
    [InlineData(64, 64)]
    [InlineData(37, 64)]
    [InlineData(101, 7)]
    public void A_constant_image_stays_constant(int side, int size)
    {
        var px = new byte[side * side * 3];
        for (int i = 0; i < px.Length; i += 3) { px[i] = 201; px[i + 1] = 13; px[i + 2] = 77; }
        var dst = new byte[size * size * 3];
        Resampler.AreaResize(new RgbImage(side, side, px), new CropBox(0, 0, side), size, dst);
        for (int i = 0; i < dst.Length; i += 3)
            Assert.Equal((201, 13, 77), (dst[i], dst[i + 1], dst[i + 2]));
    }

    [Theory]
    [InlineData(224, 64)]
    [InlineData(150, 64)]
    [InlineData(48, 64)]
    [InlineData(97, 13)]
    public void The_mean_is_preserved_up_to_rounding(int side, int size)
    {
        RgbImage image = Random(side + 10, side + 3, side);
        var crop = new CropBox(4, 2, side);
        var dst = new byte[size * size * 3];
        Resampler.AreaResize(image, crop, size, dst);
        for (int c = 0; c < 3; c++)
        {
            double sumIn = 0, sumOut = 0;
            for (int y = 0; y < side; y++)
                for (int x = 0; x < side; x++)
                    sumIn += image.Pixels[((crop.Y + y) * image.Width + crop.X + x) * 3 + c];
            for (int i = c; i < dst.Length; i += 3) sumOut += dst[i];
            // Each output is the exact weighted mean rounded: at most ±0.5 off, so the means agree within 0.5.
            Assert.InRange(sumOut / (size * size) - sumIn / (side * side), -0.5, 0.5);
        }
    }

    [Fact]
    public void Two_to_one_is_the_mean_of_each_2x2_block()
    {
        byte[] px = new byte[4 * 4 * 3];
        for (int i = 0; i < 16; i++) { px[3 * i] = (byte)(i * 10); px[3 * i + 1] = (byte)(255 - i); px[3 * i + 2] = (byte)(i * i); }
        var dst = new byte[2 * 2 * 3];
        Resampler.AreaResize(new RgbImage(4, 4, px), new CropBox(0, 0, 4), 2, dst);
        // Block (0,0) holds pixels 0,1,4,5: red (0+10+40+50)/4 = 25; green (255+254+251+250)/4 = 252.5 → 253;
        // blue (0+1+16+25)/4 = 10.5 → 11.
        Assert.Equal(new byte[] { 25, 253, 11 }, dst[..3]);
        // Block (1,1) holds 10,11,14,15: red 125; green 242.5 → 243; blue (100+121+196+225)/4 = 160.5 → 161.
        Assert.Equal(new byte[] { 125, 243, 161 }, dst[9..12]);
    }

    [Fact]
    public void Three_to_two_uses_the_exact_coverage_weights()
    {
        // 3 source pixels onto 2 outputs: output 0 covers source 0 fully and half of source 1, so in 2-D the
        // weights of the top-left output are 1, ½, ½, ¼ over (0,0), (1,0), (0,1), (1,1), divided by 2.25.
        byte[] gray = [10, 20, 30,
                       40, 50, 60,
                       70, 80, 90];
        byte[] px = gray.SelectMany(v => new[] { v, v, v }).ToArray();
        var dst = new byte[2 * 2 * 3];
        Resampler.AreaResize(new RgbImage(3, 3, px), new CropBox(0, 0, 3), 2, dst);
        // Top-left: (10 + 20/2 + 40/2 + 50/4) / 2.25 = 52.5 / 2.25 = 23.33 → 23.
        // Top-right: (30 + 20/2 + 60/2 + 50/4) / 2.25 = 82.5 / 2.25 = 36.67 → 37.
        // Bottom-left: (70 + 80/2 + 40/2 + 50/4) / 2.25 = 142.5 / 2.25 = 63.33 → 63.
        // Bottom-right: (90 + 80/2 + 60/2 + 50/4) / 2.25 = 172.5 / 2.25 = 76.67 → 77.
        Assert.Equal(new byte[] { 23, 37, 63, 77 }, new[] { dst[0], dst[3], dst[6], dst[9] });
    }

    [Fact]
    public void Enlarging_replicates_and_blends_neighbours()
    {
        // 2 → 3: the middle output straddles both sources equally.
        byte[] px = [0, 0, 0, 200, 200, 200, 0, 0, 0, 200, 200, 200];
        var dst = new byte[3 * 3 * 3];
        Resampler.AreaResize(new RgbImage(2, 2, px), new CropBox(0, 0, 2), 3, dst);
        Assert.Equal(new byte[] { 0, 100, 200 }, new[] { dst[0], dst[3], dst[6] });
    }

    [Fact]
    public void The_crop_offset_selects_the_region()
    {
        RgbImage image = Random(20, 10, 3);
        var dst = new byte[5 * 5 * 3];
        Resampler.AreaResize(image, new CropBox(7, 3, 5), 5, dst);
        for (int y = 0; y < 5; y++)
            Assert.Equal(image.Pixels.AsSpan(((3 + y) * 20 + 7) * 3, 15).ToArray(), dst.AsSpan(y * 15, 15).ToArray());
    }

    [Fact]
    public void It_is_deterministic_and_does_not_allocate()
    {
        RgbImage image = Random(224, 224, 11);
        var a = new byte[64 * 64 * 3];
        var b = new byte[64 * 64 * 3];
        Resampler.AreaResize(image, new CropBox(0, 0, 224), 64, a);
        long allocated = Allocations.OnThisThread(() => Resampler.AreaResize(image, new CropBox(0, 0, 224), 64, b));
        Assert.Equal(0, allocated);
        Assert.Equal(a, b);
    }

    [Fact]
    public void Bad_arguments_are_refused()
    {
        RgbImage image = Random(10, 8, 1);
        var dst = new byte[4 * 4 * 3];
        Assert.Throws<ArgumentOutOfRangeException>(() => Resampler.AreaResize(image, new CropBox(3, 0, 8), 4, dst));
        Assert.Throws<ArgumentOutOfRangeException>(() => Resampler.AreaResize(image, new CropBox(0, 0, 9), 4, dst));
        Assert.Throws<ArgumentOutOfRangeException>(() => Resampler.AreaResize(image, new CropBox(-1, 0, 4), 4, dst));
        Assert.Throws<ArgumentException>(() => Resampler.AreaResize(image, new CropBox(0, 0, 8), 5, dst));
    }

    [Fact]
    public void Centred_square_crop_is_the_largest_centred_square()
    {
        Assert.Equal(new CropBox(75, 0, 450), CropBox.CenteredSquare(600, 450));
        Assert.Equal(new CropBox(0, 1, 5), CropBox.CenteredSquare(5, 8));
        Assert.Equal(new CropBox(0, 0, 224), CropBox.CenteredSquare(224, 224));
    }
}
