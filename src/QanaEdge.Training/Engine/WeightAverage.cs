using System.Numerics.Tensors;

namespace QanaEdge.Training.Engine;

/// <summary>
/// Exponential moving average of a network's parameters (Polyak averaging): shadow ← d·shadow + (1 − d)·w after
/// every optimiser step, with the warm-up d_t = min(d, (1 + t) / (10 + t)) so that the first steps, whose
/// weights are still far from anything useful, are forgotten quickly. <see cref="Swap"/> exchanges the live and
/// the averaged weights in place, so evaluating (and keeping) the average needs no second network.
/// </summary>
public sealed class WeightAverage
{
    private readonly Parameter[] _parameters;
    private readonly float[][] _shadow;
    private readonly float _decay;
    private long _updates;

    public WeightAverage(IEnumerable<Parameter> parameters, float decay)
    {
        if (!(decay > 0 && decay < 1)) throw new ArgumentOutOfRangeException(nameof(decay), $"decay {decay} must be in (0, 1)");
        _parameters = parameters.ToArray();
        _shadow = _parameters.Select(p => (float[])p.Value.Clone()).ToArray();
        _decay = decay;
    }

    /// <summary>Folds the current weights into the average.</summary>
    public void Update()
    {
        _updates++;
        float d = Math.Min(_decay, (1f + _updates) / (10f + _updates));
        for (int i = 0; i < _parameters.Length; i++)
            TensorPrimitives.Lerp(_shadow[i], _parameters[i].Value, 1 - d, _shadow[i]); // s + (w − s)(1 − d)
    }

    /// <summary>Exchanges the live weights with the average (call twice to return).</summary>
    public void Swap()
    {
        for (int i = 0; i < _parameters.Length; i++)
        {
            var w = _parameters[i].Value;
            var s = _shadow[i];
            for (int j = 0; j < s.Length; j++) (w[j], s[j]) = (s[j], w[j]);
        }
    }
}
