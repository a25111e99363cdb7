using QanaEdge.Training.Engine;

namespace QanaEdge.Training.Network;

/// <summary>A network the trainer can fit: the float QANA or its fake-quantized twin.</summary>
public interface ITrainable
{
    /// <summary>x: [N, S, S, 3] in [0, 1] → logits [N,1,1,K].</summary>
    Tensor Forward(Tape tape, Tensor x);
    IEnumerable<Parameter> Parameters { get; }
}
