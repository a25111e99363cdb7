namespace QanaEdge.Model.Graph;

/// <summary>The integer operators a QANA package may contain. Values are stored in packages: never renumber.</summary>
public enum OpKind
{
    /// <summary>Dense 2-D convolution (the stem). Weights [Cout, Kh, Kw, Cin].</summary>
    Conv2D = 1,
    /// <summary>Depthwise 2-D convolution, depth multiplier 1. Weights [Kh, Kw, C].</summary>
    DepthwiseConv2D = 2,
    /// <summary>1×1 convolution (a GEMM over positions). Weights [Cout, Cin].</summary>
    PointwiseConv2D = 3,
    /// <summary>Channel concatenation; each input is rescaled to the output's quantization.</summary>
    Concat = 4,
    /// <summary>Element-wise add of two same-shape tensors, aligned by fixed-point multipliers.</summary>
    Add = 5,
    /// <summary>Global average pool: an integer sum whose 1/(H·W) is folded into the output multiplier.</summary>
    GlobalAvgPool = 6,
    /// <summary>Fully connected layer over a flat input. Weights [Out, In].</summary>
    Dense = 7,
    /// <summary>Sigmoid as a 256-entry int8 lookup table.</summary>
    Sigmoid = 8,
    /// <summary>Gate: x[h,w,c]·g broadcast from [1,1,C] (SE, channel), [H,W,1] (spatial) or [H,W,C] (SA-ECA).</summary>
    Mul = 9,
    /// <summary>Bounded clamp in the integer domain (ReLU / ReLU6) when it cannot be fused into the producer.</summary>
    Clamp = 10,
    /// <summary>Reshape / flatten: a view, no arithmetic.</summary>
    Reshape = 11,
    /// <summary>Integrate-and-fire readout over a window T: int8 logits in, int32 spike counts out.</summary>
    SpikingReadout = 12,
}

/// <summary>Element type of a tensor. Activations are int8; only the readout's spike counts are int32.</summary>
public enum DataType
{
    Int8 = 1,
    Int32 = 2,
}

/// <summary>Padding rule of a windowed operator.</summary>
public enum Padding
{
    /// <summary>Output = ceil(in / stride); zeros (the zero point) padded, more at the bottom/right.</summary>
    Same = 1,
    /// <summary>No padding: output = floor((in − k) / stride) + 1.</summary>
    Valid = 2,
}
