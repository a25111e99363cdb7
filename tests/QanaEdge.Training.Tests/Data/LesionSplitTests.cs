using QanaEdge.Model;
using QanaEdge.Training.Data;

namespace QanaEdge.Training.Tests.Data;

public class LesionSplitTests
{
    private static readonly IReadOnlyList<Ham10000Row> All = Ham10000Index.Load(Ham10000Location.Images, Ham10000Location.Labels);

    [Fact]
    public void No_lesion_crosses_parts_and_every_image_is_used_once()
    {
        var split = LesionSplit.Create(All, seed: 7);
        var owner = new Dictionary<string, int>();
        int part = 0;
        foreach (var rows in new[] { split.Train, split.Validation, split.Test })
        {
            foreach (var r in rows)
                if (owner.TryGetValue(r.LesionId!, out int p)) Assert.Equal(part, p);
                else owner[r.LesionId!] = part;
            part++;
        }
        var ids = split.Train.Concat(split.Validation).Concat(split.Test).Select(r => r.ImageId).ToList();
        Assert.Equal(All.Count, ids.Count);
        Assert.Equal(All.Count, ids.Distinct().Count());
    }

    [Fact]
    public void Class_proportions_are_close_to_the_targets()
    {
        var split = LesionSplit.Create(All, seed: 7);
        var total = Ham10000Index.ClassCounts(All);
        var parts = new[] { (split.Train, 0.7), (split.Validation, 0.1), (split.Test, 0.2) };
        foreach (var (rows, fraction) in parts)
        {
            Assert.InRange((double)rows.Count / All.Count, fraction - 0.01, fraction + 0.01);
            var counts = Ham10000Index.ClassCounts(rows);
            for (int c = 0; c < Classes.Count; c++)
            {
                // Within a few images (one lesion has at most six) of the class's target.
                Assert.InRange(counts[c], fraction * total[c] - 6, fraction * total[c] + 6);
                Assert.True(counts[c] > 0, $"{Classes.Codes[c]} is absent from a part");
            }
        }
    }

    [Fact]
    public void Same_seed_same_split_whatever_the_input_order_other_seed_other_split()
    {
        var a = LesionSplit.Create(All, seed: 11);
        var shuffled = All.ToArray();
        new SeededRandom(99).Shuffle(shuffled.AsSpan());
        var b = LesionSplit.Create(shuffled, seed: 11);
        Assert.Equal(a.Test.Select(r => r.ImageId), b.Test.Select(r => r.ImageId));
        Assert.Equal(a.Validation.Select(r => r.ImageId), b.Validation.Select(r => r.ImageId));
        var c = LesionSplit.Create(All, seed: 12);
        Assert.NotEqual(a.Test.Select(r => r.ImageId), c.Test.Select(r => r.ImageId));
    }

    [Fact]
    public void Refuses_rows_without_lesion_and_bad_fractions()
    {
        var rows = Ham10000Index.Parse(new StringReader("image_id,dx\nISIC_1,nv\n"), "/img");
        Assert.Contains("lesion_id", Assert.Throws<DatasetException>(() => LesionSplit.Create(rows, 1)).Message);
        Assert.Throws<DatasetException>(() => LesionSplit.Create(All, 1, 0.5, 0.1, 0.1));
    }

    [Fact]
    public void Split_csvs_round_trip()
    {
        var dir = Directory.CreateTempSubdirectory("qana-split-");
        try
        {
            var split = LesionSplit.Create(All, seed: 3);
            split.WriteCsv(dir.FullName);
            var test = Ham10000Index.Load(Ham10000Location.Images, Path.Combine(dir.FullName, "test.csv"));
            Assert.Equal(split.Test, test);
        }
        finally { dir.Delete(true); }
    }

    [Fact]
    public void Shipped_split_files_are_the_default_split()
    {
        // firmware-models/splits/ is what `make splits` writes; it must not drift from the code.
        string? repo = null;
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null && repo is null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "QanaEdge.sln"))) repo = d.FullName;
        Assert.NotNull(repo);
        var split = LesionSplit.Create(All);
        var parts = new[] { ("train.csv", split.Train), ("val.csv", split.Validation), ("test.csv", split.Test) };
        foreach (var (file, rows) in parts)
        {
            var shipped = Ham10000Index.Load(Ham10000Location.Images, Path.Combine(repo!, "firmware-models", "splits", file));
            Assert.Equal(rows, shipped);
        }
    }
}
