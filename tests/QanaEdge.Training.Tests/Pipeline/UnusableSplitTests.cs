using QanaEdge.Model;
using QanaEdge.Training.Data;
using QanaEdge.Training.Pipeline;
using QanaEdge.Training.Tests.Data;

namespace QanaEdge.Training.Tests.Pipeline;

/// <summary>
/// A data set too small for the split to give validation and test what the run needs of them (validation: early
/// stopping, the threshold cross-check over two lesion-grouped halves, the referral threshold from malignant and
/// benign cases; test: referral sensitivity and specificity) is refused in one <see cref="DatasetException"/> before
/// any image is decoded, not with an internal error after the training.
/// </summary>
public sealed class UnusableSplitTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("qana-split-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Labels => Path.Combine(_dir, "labels.csv");

    /// <summary>Copies one image of each of the first lesions (by image id) of every class; returns the labels file.</summary>
    private string Subset(Func<string, int> lesionsOf)
    {
        var all = Ham10000Index.Load(Ham10000Location.Images, Ham10000Location.Labels);
        var lines = new List<string> { "image_id,lesion_id,dx" };
        foreach (var g in all.GroupBy(r => r.Dx))
            foreach (var r in g.OrderBy(r => r.ImageId, StringComparer.Ordinal).DistinctBy(r => r.LesionId).Take(lesionsOf(g.Key)))
            {
                File.Copy(r.ImagePath, Path.Combine(_dir, r.ImageId + ".jpg"));
                lines.Add($"{r.ImageId},{r.LesionId},{r.Dx}");
            }
        File.WriteAllLines(Labels, lines);
        return Labels;
    }

    [Fact]
    public void A_split_without_validation_images_is_refused_before_decoding()
    {
        Subset(_ => 5);
        var split = LesionSplit.Create(Ham10000Index.Load(_dir, Labels));
        Assert.Empty(split.Validation);
        var e = Assert.Throws<DatasetException>(() => PreparedData.Load(_dir, Labels, 16));
        Assert.Contains("validation 0 images", e.Message);
    }

    [Fact]
    public void A_validation_split_without_a_malignant_case_is_refused()
    {
        Subset(dx => Classes.Malignant.Contains(dx) ? 5 : 8);
        var split = LesionSplit.Create(Ham10000Index.Load(_dir, Labels));
        Assert.NotEmpty(split.Validation);
        Assert.DoesNotContain(split.Validation, r => Classes.Malignant.Contains(r.Dx));
        var e = Assert.Throws<DatasetException>(() => PreparedData.Load(_dir, Labels, 16));
        Assert.Contains("0 malignant", e.Message);
    }

    [Fact]
    public void The_incremental_stage_needs_a_class_with_two_validation_lesions()
    {
        // Eight lesions of each class give validation one lesion of each: enough for a run, not for the golden set.
        Subset(_ => 8);
        PreparedData.Load(_dir, Labels, 16);
        var e = Assert.Throws<DatasetException>(() => PreparedData.Load(_dir, Labels, 16, incremental: true));
        Assert.Contains("golden", e.Message);
    }
}
