using QanaEdge.Training.Data;

namespace QanaEdge.Training.Tests.Data;

public class ClassBalanceTests
{
    [Fact]
    public void Inverse_weights_equalise_class_contributions_and_keep_the_mean()
    {
        int[] counts = [100, 25, 0, 875];
        var w = ClassBalance.Weights(counts, ClassWeighting.Inverse);
        Assert.Equal(100 * w[0], 25 * w[1], 3);
        Assert.Equal(100 * w[0], 875 * w[3], 3);
        Assert.Equal(0f, w[2]);
        Assert.Equal(1000, 100 * w[0] + 25 * w[1] + 875 * w[3], 2);
        var s = ClassBalance.Weights(counts, ClassWeighting.InverseSqrt);
        Assert.Equal(2.0, s[1] / s[0], 4);
        var e = ClassBalance.Weights(counts, ClassWeighting.EffectiveNumber);
        Assert.True(e[1] > e[0] && e[0] > e[3]);
    }

    [Fact]
    public void Balanced_epoch_draws_classes_equally_with_alpha_zero_and_is_seeded()
    {
        var labels = Enumerable.Range(0, 1000).Select(i => i < 900 ? 0 : i < 980 ? 1 : 2).ToArray();
        var order = ClassBalance.BalancedEpoch(labels, 4, seed: 3, epoch: 0, alpha: 0);
        Assert.Equal(1000, order.Length);
        var perClass = new int[3];
        foreach (var i in order) perClass[labels[i]]++;
        Assert.All(perClass, n => Assert.InRange(n, 280, 390));
        // The 20 images of class 2 are each drawn about 333/20 times: all of them, evenly.
        var class2 = order.Where(i => labels[i] == 2).GroupBy(i => i).Select(g => g.Count()).ToList();
        Assert.Equal(20, class2.Count);
        Assert.True(class2.Max() - class2.Min() <= 1);
        Assert.Equal(order, ClassBalance.BalancedEpoch(labels, 4, 3, 0, 0));
        Assert.NotEqual(order, ClassBalance.BalancedEpoch(labels, 4, 3, 1, 0));
        // alpha = 1 reproduces natural frequencies.
        var natural = ClassBalance.BalancedEpoch(labels, 4, 3, 0, 1);
        Assert.InRange(natural.Count(i => labels[i] == 0), 860, 940);
    }
}
