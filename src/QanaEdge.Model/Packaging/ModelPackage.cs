using QanaEdge.Model.Graph;

namespace QanaEdge.Model.Packaging;

/// <summary>A loaded (or freshly converted) model: manifest plus integer graph. Immutable once built.</summary>
public sealed class ModelPackage
{
    public required ModelManifest Manifest { get; init; }
    public required ModelGraph Graph { get; init; }
}
