using QanaEdge.Model;
using QanaEdge.Model.Graph;
using QanaEdge.Training.Engine;
using QanaEdge.Training.Network;
using QanaEdge.Training.Quantization;

namespace QanaEdge.Training.Tests.Quantization;

/// <summary>Batch norm folded into part of a convolution's output channels (QuantNetBuilder's internal builder).</summary>
public class BatchNormFoldTests
{
    /// <summary>
    /// Folding the batch norm's channels [2, 4) into a 4-output convolution keeps the convolution's columns 2 and 3
    /// (and their biases) and scales them by the batch norm's channels 2 and 3. No caller folds a part of a
    /// convolution at an offset today; the ghost depthwise convolution's offset is into the batch norm alone.
    /// </summary>
    [Fact]
    public void Folding_a_part_of_a_convolution_takes_the_columns_at_its_offset()
    {
        const int cin = 3, cout = 4, half = 2;
        var conv = new Conv2d("c", cin, cout, 1, 1, bias: true);
        for (int i = 0; i < conv.Weight.Length; i++) conv.Weight.Value[i] = 1 + i; // row r, column k: 1 + 4r + k
        for (int k = 0; k < cout; k++) conv.Bias!.Value[k] = 10 * (k + 1);
        var bn = new BatchNorm("bn", cout);
        for (int k = 0; k < cout; k++)
        {
            bn.Gamma.Value[k] = k + 1; bn.Beta.Value[k] = -k; bn.RunningMean[k] = k; bn.RunningVar[k] = 4 - bn.Epsilon;
        }
        var scheme = new QuantScheme(QuantizationProfile.Paper8);
        var input = new QTensor { Name = "in", Grid = new ActivationGrid(1.0 / 255, -128, -128, 127) };
        var net = new QuantNet(scheme, QanaOptions.Full, input);
        new QuantNetBuilder.Builder(net, scheme).Weighted("c_bn", OpKind.PointwiseConv2D, conv, bn, half, half, input, null);

        var step = Assert.IsType<WeightedStep>(Assert.Single(net.Steps));
        Assert.Equal(half, step.OutChannels);
        for (int k = 0; k < half; k++)
        {
            int ch = half + k;
            float a = bn.Gamma.Value[ch] / MathF.Sqrt(bn.RunningVar[ch] + bn.Epsilon); // (ch + 1) / 2
            for (int r = 0; r < cin; r++)
                Assert.Equal(a * conv.Weight.Value[r * cout + ch], step.MasterWeight.Value[r * half + k]);
            Assert.Equal(a * (conv.Bias!.Value[ch] - bn.RunningMean[ch]) + bn.Beta.Value[ch], step.MasterBias.Value[k]);
        }
    }
}
