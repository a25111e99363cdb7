using System.Text.Json.Serialization;

namespace QanaEdge.Model;

/// <summary>How a network is quantized. Stored by name in packages ("paper8", "akd1000").</summary>
public enum QuantizationProfile
{
    /// <summary>8-bit weights and activations, affine activations, as the QANA paper states.</summary>
    [JsonStringEnumMemberName("paper8")]
    Paper8 = 1,
    /// <summary>What the AKD1000 runs: 8-bit input layer, then at most 4-bit weights and activations,
    /// symmetric, power-of-two scales.</summary>
    [JsonStringEnumMemberName("akd1000")]
    Akd1000 = 2,
}
