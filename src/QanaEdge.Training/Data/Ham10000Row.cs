namespace QanaEdge.Training.Data;

/// <summary>One labelled image of the HAM10000 layout.</summary>
/// <param name="ImageId">The file stem, e.g. ISIC_0024306 (the image is ImagePath).</param>
/// <param name="LesionId">The lesion the image shows (several images may show one lesion); null when the
/// label file has no lesion_id column, which is acceptable for evaluation but not for splitting.</param>
/// <param name="Dx">The diagnosis code as written in the label file, lower-cased.</param>
/// <param name="ClassIndex">Index of Dx in <see cref="QanaEdge.Model.Classes.Codes"/>.</param>
/// <param name="ImagePath">Full path of the image file (DIR/image_id.jpg).</param>
public sealed record Ham10000Row(string ImageId, string? LesionId, string Dx, int ClassIndex, string ImagePath);
