using QanaEdge.Model;
using QanaEdge.Training.Data;
using QanaEdge.Training.Engine;
using QanaEdge.Training.Network;
using QanaEdge.Training.Pipeline;
using QanaEdge.Training.Quantization;
using QanaEdge.Training.Tests.Data;

namespace QanaEdge.Training.Tests.Quantization;

/// <summary>
/// Batch-norm folding changes no function: the fake-quantized network with quantization off (clamps only, float
/// sigmoids, float master weights) is the float network in inference mode, for every ablation shape, with the batch
/// norms' statistics and affine parameters far from their initial values so that every fold matters.
/// </summary>
public class FoldedNetworkTests
{
    private static readonly Lazy<ImageSet> Images = new(() =>
        ImageSet.Load(Ham10000Index.Load(Ham10000Location.Images, Ham10000Location.Labels).Take(32).ToList(), 32));

    public static TheoryData<string> Shapes => new() { "full", "pooled", "baseline", "no-ghost", "no-eca", "no-se" };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void The_folded_network_without_quantization_is_the_float_network(string shape)
    {
        var baseOptions = new QanaOptions { InputSize = 32, StemChannels = 8, Blocks = [(16, 1), (24, 2), (32, 2)], DropoutRate = 0 };
        var options = shape switch
        {
            "pooled" => baseOptions with { PooledHead = true },
            "baseline" => baseOptions with { Ghost = false, Eca = false, Se = false, QuantHead = false },
            "no-ghost" => baseOptions with { Ghost = false },
            "no-eca" => baseOptions with { Eca = false },
            "no-se" => baseOptions with { Se = false },
            _ => baseOptions,
        };
        var images = Images.Value;
        var net = new QanaNet(options, 7);
        var rng = new Rng(11);
        foreach (var bn in net.BatchNorms)
            for (int c = 0; c < bn.Channels; c++)
            {
                bn.Gamma.Value[c] = 0.5f + rng.NextFloat();
                bn.Beta.Value[c] = rng.NextFloat() - 0.5f;
            }
        var trainer = new Trainer(new TrainOptions { Network = options, BatchSize = 16 });
        trainer.RecalibrateBatchNorm(net, images, 2); // statistics of real images, far from (0, 1)
        var q = QuantNetBuilder.FromFloat(net, new QuantScheme(QuantizationProfile.Paper8));
        q.SetEnabled(false);

        var expected = trainer.PredictLogits(net, images);
        var actual = trainer.PredictLogits(q, images);
        double worst = 0;
        for (int i = 0; i < images.Count; i++)
            for (int k = 0; k < Classes.Count; k++)
                worst = Math.Max(worst, Math.Abs(expected[i][k] - actual[i][k]) / Math.Max(1, Math.Abs(expected[i][k])));
        Assert.True(worst < 1e-4, $"{shape}: logits differ by up to {worst:G3} (relative)");
    }
}
