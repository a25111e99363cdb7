using System.Text.Json.Serialization;

namespace QanaEdge.Model.Packaging;

/// <summary>What a package carries. Decides which signer roles may sign it.</summary>
public enum PackageKind
{
    /// <summary>A complete model: only a vendor key may sign it.</summary>
    [JsonStringEnumMemberName("model")]
    Model = 1,
    /// <summary>A readout learned on the device for one base model (its head and readout only);
    /// a vendor or a learner key may sign it.</summary>
    [JsonStringEnumMemberName("readout-update")]
    ReadoutUpdate = 2,
}
