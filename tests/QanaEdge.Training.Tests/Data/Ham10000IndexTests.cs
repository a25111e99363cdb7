using QanaEdge.Training.Data;

namespace QanaEdge.Training.Tests.Data;

public class Ham10000IndexTests
{
    [Fact]
    public void Header_decides_the_columns_and_extra_columns_are_ignored()
    {
        var csv = "\uFEFFage,dx,sex,image_id,lesion_id\r\n" +
                  "45,nv,male,ISIC_1,HAM_1\r\n" +
                  "\"60\",MEL,\"female, older\",ISIC_2,HAM_1\r\n" +
                  "\n" +
                  "30,vasc,female,ISIC_3,HAM_2\n";
        var rows = Ham10000Index.Parse(new StringReader(csv), "/img");
        Assert.Equal(3, rows.Count);
        Assert.Equal(new Ham10000Row("ISIC_2", "HAM_1", "mel", 4, Path.Combine("/img", "ISIC_2.jpg")), rows[1]);
        Assert.Equal(6, rows[2].ClassIndex);
        Assert.Equal("HAM_2", rows[2].LesionId);
    }

    [Fact]
    public void Lesion_id_is_optional()
    {
        var rows = Ham10000Index.Parse(new StringReader("image_id,dx\nISIC_9,bcc\n"), "/img");
        Assert.Single(rows);
        Assert.Null(rows[0].LesionId);
        Assert.Equal(1, rows[0].ClassIndex);
    }

    [Theory]
    [InlineData("image_id,lesion_id\nISIC_1,HAM_1\n", "image_id and dx")]
    [InlineData("", "empty")]
    [InlineData("image_id,dx\n", "no rows")]
    [InlineData("image_id,dx\nISIC_1,nv\nISIC_1,mel\n", "labels: 1 row repeats the image_id of an earlier row (line 3: ISIC_1, first on line 2)")]
    [InlineData("image_id,dx\nISIC_1,nv\nISIC_2,melanoma\nISIC_3,scc\n", "2 rows have a dx")]
    [InlineData("image_id,dx,lesion_id\nISIC_1,nv\n", "line 2")]
    [InlineData("image_id,dx\n../etc/passwd,nv\n", "not a plain file name")]
    [InlineData("image_id,dx\n\"ISIC_1,nv\n", "labels line 2: a quoted field is not closed")]
    public void Bad_label_files_give_one_clear_error(string csv, string expected)
    {
        var e = Assert.Throws<DatasetException>(() => Ham10000Index.Parse(new StringReader(csv), "/img"));
        Assert.Contains(expected, e.Message);
    }

    /// <summary>
    /// Repeated image_ids are counted and the first few named with the line each first appeared on, together with any
    /// unknown dx, as docs/evaluation.md says of every refused label file: the first repeat alone ended the parse, so a
    /// file with many (two metadata files joined) was refused again at each run, one repeat at a time.
    /// </summary>
    [Fact]
    public void Repeated_image_ids_are_counted_and_named_with_the_unknown_labels()
    {
        var csv = new System.Text.StringBuilder("image_id,dx\n");
        for (int i = 1; i <= 8; i++) csv.Append($"ISIC_{i},nv\n");
        for (int i = 1; i <= 7; i++) csv.Append($"ISIC_{i},mel\n");
        csv.Append("ISIC_99,melanoma\n");
        var e = Assert.Throws<DatasetException>(() => Ham10000Index.Parse(new StringReader(csv.ToString()), "/img"));
        Assert.Equal("labels: 7 rows repeat the image_id of an earlier row (line 10: ISIC_1, first on line 2; line 11: ISIC_2, first on line 3; " +
            "line 12: ISIC_3, first on line 4; line 13: ISIC_4, first on line 5; line 14: ISIC_5, first on line 6; ...); " +
            "and 1 row has a dx that is not one of akiec, bcc, bkl, df, mel, nv, vasc (line 17: 'melanoma')", e.Message);
    }

    /// <summary>Rows with nothing in them, as spreadsheet programs write the empty rows under the data (",,,,,,") and as an
    /// editor leaves a last line of spaces, are blank lines: they refused the whole file ("empty image_id", "1 fields").</summary>
    [Fact]
    public void Rows_of_empty_fields_are_skipped_like_blank_lines()
    {
        const string csv = "image_id,lesion_id,dx,age\r\nISIC_1,HAM_1,nv,40\r\n,,,\r\nISIC_2,HAM_2,mel,55\r\n,,,\r\n , ,,\r\n   \r\n";
        var rows = Ham10000Index.Parse(new StringReader(csv), "/img");
        Assert.Equal(["ISIC_1", "ISIC_2"], rows.Select(r => r.ImageId));
        // A row with something in it is still checked.
        var e = Assert.Throws<DatasetException>(() => Ham10000Index.Parse(new StringReader("image_id,lesion_id,dx\n,HAM_1,nv\n"), "/img"));
        Assert.Contains("line 2: empty image_id", e.Message);
    }

    [Fact]
    public void Missing_images_are_counted_and_named()
    {
        var dir = Directory.CreateTempSubdirectory("qana-index-");
        try
        {
            File.WriteAllBytes(Path.Combine(dir.FullName, "ISIC_1.jpg"), [0xFF, 0xD8]);
            var csv = Path.Combine(dir.FullName, "labels.csv");
            File.WriteAllText(csv, "image_id,dx\nISIC_1,nv\nISIC_2,nv\nISIC_3,bkl\n");
            var e = Assert.Throws<DatasetException>(() => Ham10000Index.Load(dir.FullName, csv));
            Assert.Contains("2 of 3 images", e.Message);
            Assert.Contains("ISIC_2", e.Message);
            Assert.Contains("ISIC_3", e.Message);
            Directory.CreateDirectory(Path.Combine(dir.FullName, "ISIC_3.jpg"));
            e = Assert.Throws<DatasetException>(() => Ham10000Index.Load(dir.FullName, csv));
            Assert.Contains("2 of 3 images", e.Message);
            Assert.EndsWith("; 1 of them is a folder: ISIC_3", e.Message);
            Assert.Throws<DatasetException>(() => Ham10000Index.Load(Path.Combine(dir.FullName, "nope"), csv));
            Assert.Throws<DatasetException>(() => Ham10000Index.Load(dir.FullName, csv + ".nope"));
        }
        finally { dir.Delete(true); }
    }

    [Fact]
    public void Loads_the_shared_data_set()
    {
        var rows = Ham10000Index.Load(Ham10000Location.Images, Ham10000Location.Labels);
        Assert.Equal(6880, rows.Count);
        // The counts the data set's description states.
        Assert.Equal(new[] { 183, 264, 583, 60, 1045, 4665, 80 }, Ham10000Index.ClassCounts(rows));
        Assert.Equal(6288, rows.Select(r => r.LesionId).Distinct().Count());
        Assert.All(rows.Take(20), r => Assert.True(File.Exists(r.ImagePath)));
    }

    [Fact]
    public void Written_csv_reads_back_identically()
    {
        var rows = Ham10000Index.Parse(new StringReader("image_id,lesion_id,dx\nISIC_1,\"HAM,1\",nv\nISIC_2,HAM_2,df\n"), "/img");
        var w = new StringWriter();
        Ham10000Index.Write(w, rows);
        var back = Ham10000Index.Parse(new StringReader(w.ToString()), "/img");
        Assert.Equal(rows, back);
    }
}
