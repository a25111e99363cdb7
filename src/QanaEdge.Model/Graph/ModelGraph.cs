namespace QanaEdge.Model.Graph;

/// <summary>
/// The integer graph: tensors and nodes in topological order. Tensor <see cref="InputTensor"/> is the
/// quantized image; <see cref="LogitsTensor"/> the int8 class logits; <see cref="OutputTensor"/> the
/// spike counts of the readout (or the logits when the graph has no readout).
/// </summary>
public sealed class ModelGraph
{
    public required TensorSpec[] Tensors { get; init; }
    public required Node[] Nodes { get; init; }
    public required int InputTensor { get; init; }
    public required int LogitsTensor { get; init; }
    public required int OutputTensor { get; init; }
}
