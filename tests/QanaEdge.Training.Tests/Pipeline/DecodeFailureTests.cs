using QanaEdge.Model;
using QanaEdge.TestSupport;
using QanaEdge.Training.Data;
using QanaEdge.Training.Pipeline;
using QanaEdge.Training.Tests.Data;

namespace QanaEdge.Training.Tests.Pipeline;

/// <summary>
/// Image files that cannot be decoded: every loop over the data set's files reports all of them in one
/// <see cref="DatasetException"/> (not a parallel loop's AggregateException), and the test split, read only at the
/// end of a run, is checked before training starts.
/// </summary>
public sealed class DecodeFailureTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("qana-decode-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>Copies the first <paramref name="perClass"/> images of each class (by id) into a folder of their own,
    /// with a labels file; returns the rows in that folder.</summary>
    private IReadOnlyList<Ham10000Row> Subset(int perClass)
    {
        var all = Ham10000Index.Load(Ham10000Location.Images, Ham10000Location.Labels);
        var picked = all.GroupBy(r => r.ClassIndex).OrderBy(g => g.Key)
            .SelectMany(g => g.OrderBy(r => r.ImageId, StringComparer.Ordinal).Take(perClass)).ToList();
        var lines = new List<string> { "image_id,lesion_id,dx" };
        foreach (var r in picked)
        {
            File.Copy(r.ImagePath, Path.Combine(_dir, r.ImageId + ".jpg"));
            lines.Add($"{r.ImageId},{r.LesionId},{r.Dx}");
        }
        File.WriteAllLines(Labels, lines);
        return Ham10000Index.Load(_dir, Labels);
    }

    private string Labels => Path.Combine(_dir, "labels.csv");

    private static void Spoil(Ham10000Row row) => File.WriteAllText(row.ImagePath, "not a picture");

    private static void Truncate(Ham10000Row row)
    {
        byte[] bytes = File.ReadAllBytes(row.ImagePath);
        File.WriteAllBytes(row.ImagePath, bytes[..(bytes.Length / 2)]);
    }

    [Fact]
    public void Loading_a_set_names_every_file_that_cannot_be_decoded_in_one_exception()
    {
        var rows = Subset(1);
        Spoil(rows[1]);
        Truncate(rows[4]);
        var e = Assert.Throws<DatasetException>(() => ImageSet.Load(rows, 16));
        Assert.StartsWith($"2 of {rows.Count} images cannot be decoded: ", e.Message);
        Assert.Contains($"{rows[1].ImageId}.jpg: not_an_image", e.Message);
        Assert.Contains($"{rows[4].ImageId}.jpg: truncated", e.Message);
    }

    [Fact]
    public void The_devices_path_names_the_files_it_cannot_decode_in_one_exception()
    {
        var rows = Subset(1);
        Spoil(rows[0]);
        Spoil(rows[5]);
        File.Delete(rows[6].ImagePath);
        var paths = rows.Select(r => r.ImagePath).ToArray();
        var e = Assert.Throws<DatasetException>(() => DevicePredictions.Classify(TestGraphs.QanaShaped(3), paths));
        Assert.StartsWith($"3 of {rows.Count} images cannot be decoded: {rows[0].ImagePath}: not_an_image", e.Message);
        Assert.Contains($"{rows[6].ImagePath}: cannot read", e.Message);
    }

    [Fact]
    public void A_test_image_that_cannot_be_decoded_fails_the_preparation_before_training()
    {
        var rows = Subset(8);
        var split = LesionSplit.Create(rows);
        Assert.NotEmpty(split.Test);
        Ham10000Row bad = split.Test[^1];
        Truncate(bad);
        var e = Assert.Throws<DatasetException>(() => PreparedData.Load(_dir, Labels, 16));
        Assert.StartsWith($"1 of {split.Test.Count} test images cannot be decoded: {bad.ImagePath}: truncated", e.Message);
    }

    [Fact]
    public void Messages_name_at_most_five_files_and_count_the_rest()
    {
        var rows = Subset(1);
        foreach (var r in rows) Spoil(r);
        var e = Assert.Throws<DatasetException>(() => ImageSet.Load(rows, 16));
        Assert.StartsWith($"7 of 7 images cannot be decoded: ", e.Message);
        Assert.EndsWith("; ... (2 more)", e.Message);
        Assert.Equal(5, e.Message.Split(": not_an_image").Length - 1);
        Assert.Equal(Classes.Count, rows.Count);
    }
}
