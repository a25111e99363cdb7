using System.Text;
using QanaEdge.Model;

namespace QanaEdge.Training.Data;

/// <summary>
/// Reads a label file in the HAM10000 metadata format and pairs each row with its image file.
/// The header decides the columns: image_id and dx are required, lesion_id is optional (evaluation needs
/// no lesion grouping), every other column (dx_type, age, sex, localization, ...) is ignored.
/// The image of a row is IMAGES_DIR/image_id.jpg.
/// </summary>
public static class Ham10000Index
{
    /// <summary>How many offending entries an error message lists before summarising the rest.</summary>
    private const int ListedInErrors = 5;

    /// <summary>Loads every row, in file order. Throws <see cref="DatasetException"/> when the file cannot be
    /// read, a required column is missing, a dx is not one of the seven classes, an image_id repeats, or
    /// image files are missing (the message names the count and the first few).</summary>
    public static IReadOnlyList<Ham10000Row> Load(string imagesDir, string labelsCsv)
    {
        if (ExpectedPath.FolderProblem(imagesDir) is { } noFolder) throw new DatasetException($"images folder {noFolder}: {imagesDir}");
        if (ExpectedPath.FileProblem(labelsCsv) is { } noFile) throw new DatasetException($"label file {noFile}: {labelsCsv}");
        List<Ham10000Row> rows;
        try
        {
            using var reader = new StreamReader(labelsCsv, Encoding.UTF8, detectEncodingFromByteOrderMarks: true);
            rows = Parse(reader, imagesDir, labelsCsv);
        }
        catch (IOException e) { throw new DatasetException($"cannot read {labelsCsv}: {e.Message}", e); }
        catch (UnauthorizedAccessException e) { throw new DatasetException($"cannot read {labelsCsv}: {e.Message}", e); }

        var absent = rows.Where(r => !File.Exists(r.ImagePath)).ToList();
        var missing = absent.Select(r => r.ImageId).ToList();
        if (missing.Count > 0)
        {
            // A folder where an image should be is not a missing image: say so, so nobody looks for a lost file.
            var folders = absent.Where(r => Directory.Exists(r.ImagePath)).Select(r => r.ImageId).ToList();
            throw new DatasetException(
                $"{missing.Count} of {rows.Count} images listed in {labelsCsv} are missing from {imagesDir} " +
                $"(expected IMAGE_ID.jpg): {Listed(missing)}" +
                (folders.Count > 0 ? $"; {folders.Count} of them {(folders.Count == 1 ? "is a folder" : "are folders")}: {Listed(folders)}" : ""));
        }
        return rows;
    }

    /// <summary>Parses label rows without touching the file system beyond building each image path.</summary>
    public static List<Ham10000Row> Parse(TextReader reader, string imagesDir, string sourceName = "labels")
    {
        using var records = CsvReader.Read(reader, sourceName).GetEnumerator();
        if (!records.MoveNext()) throw new DatasetException($"{sourceName} is empty: expected a header with image_id and dx");
        var header = records.Current.Fields.Select(h => h.Trim().TrimStart('\uFEFF').ToLowerInvariant()).ToList();
        int imageCol = header.IndexOf("image_id"), dxCol = header.IndexOf("dx"), lesionCol = header.IndexOf("lesion_id");
        if (imageCol < 0 || dxCol < 0)
            throw new DatasetException(
                $"{sourceName}: the header must name the columns image_id and dx (found: {Shown(header)})");

        var rows = new List<Ham10000Row>();
        // Each image_id with the line it was first seen on, so a repeat can name both.
        var seen = new Dictionary<string, int>(StringComparer.Ordinal);
        var unknown = new List<string>();
        int unknownCount = 0;
        var repeated = new List<string>();
        int repeatedCount = 0;
        while (records.MoveNext())
        {
            var (line, f) = records.Current;
            // A row with nothing in it is a blank line: spreadsheet programs write the empty rows below the data as
            // ",,,,,," and an editor leaves spaces on the last line, and either refused the whole file.
            if (f.All(string.IsNullOrWhiteSpace)) continue;
            int needed = Math.Max(imageCol, Math.Max(dxCol, lesionCol)) + 1;
            if (f.Count < needed)
                throw new DatasetException($"{sourceName} line {line}: {f.Count} fields, the header needs at least {needed}");
            string imageId = f[imageCol].Trim();
            string dx = f[dxCol].Trim().ToLowerInvariant();
            string? lesion = lesionCol >= 0 ? f[lesionCol].Trim() : null;
            if (imageId.Length == 0) throw new DatasetException($"{sourceName} line {line}: empty image_id");
            if (imageId.IndexOfAny(['/', '\\']) >= 0 || imageId is "." or "..")
                throw new DatasetException($"{sourceName} line {line}: image_id '{imageId}' is not a plain file name");
            if (lesionCol >= 0 && lesion!.Length == 0)
                throw new DatasetException($"{sourceName} line {line}: empty lesion_id for {imageId}");
            // Counted and listed like an unknown dx rather than thrown at the first: a file with many repeats (two
            // metadata files joined) was refused again at each run, one repeat at a time.
            if (!seen.TryAdd(imageId, line))
            {
                repeatedCount++;
                if (repeated.Count < ListedInErrors) repeated.Add($"line {line}: {imageId}, first on line {seen[imageId]}");
                continue;
            }
            int cls = Classes.IndexOf(dx);
            if (cls < 0)
            {
                unknownCount++;
                if (unknown.Count < ListedInErrors) unknown.Add($"line {line}: '{dx}'");
                continue;
            }
            rows.Add(new Ham10000Row(imageId, lesion, dx, cls, Path.Combine(imagesDir, imageId + ".jpg")));
        }
        var problems = new List<string>();
        if (repeatedCount > 0)
            problems.Add($"{repeatedCount} {(repeatedCount == 1 ? "row repeats" : "rows repeat")} the image_id of an earlier row " +
                $"({string.Join("; ", repeated)}{(repeatedCount > repeated.Count ? "; ..." : "")})");
        if (unknownCount > 0)
            problems.Add($"{unknownCount} {(unknownCount == 1 ? "row has" : "rows have")} a dx that is not one of {string.Join(", ", Classes.Codes)} " +
                $"({string.Join("; ", unknown)}{(unknownCount > unknown.Count ? "; ..." : "")})");
        if (problems.Count > 0) throw new DatasetException($"{sourceName}: {string.Join("; and ", problems)}");
        if (rows.Count == 0) throw new DatasetException($"{sourceName} has a header but no rows");
        return rows;
    }

    /// <summary>Writes rows in the HAM10000 metadata format (image_id, lesion_id, dx), readable by
    /// <see cref="Load"/> and by `qana evaluate --labels`.</summary>
    public static void Write(string path, IEnumerable<Ham10000Row> rows)
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir is not null) Directory.CreateDirectory(dir);
        WholeFile.Write(Path.GetFullPath(path), ToBytes(rows), WholeFileOptions.UserOutput);
    }

    /// <summary>The CSV file's bytes: UTF-8 without a byte-order mark, "\n" line ends (the committed split's format).</summary>
    public static byte[] ToBytes(IEnumerable<Ham10000Row> rows)
    {
        var w = new StringWriter { NewLine = "\n" };
        Write(w, rows);
        return new UTF8Encoding(false).GetBytes(w.ToString());
    }

    public static void Write(TextWriter w, IEnumerable<Ham10000Row> rows)
    {
        w.WriteLine("image_id,lesion_id,dx");
        foreach (var r in rows)
            w.WriteLine($"{CsvReader.Escape(r.ImageId)},{CsvReader.Escape(r.LesionId ?? r.ImageId)},{r.Dx}");
    }

    /// <summary>Images per class, in class order.</summary>
    public static int[] ClassCounts(IEnumerable<Ham10000Row> rows)
    {
        var counts = new int[Classes.Count];
        foreach (var r in rows) counts[r.ClassIndex]++;
        return counts;
    }

    /// <summary>
    /// A header as an error message shows it: at most 200 characters, control characters as '?'. A file that is not a
    /// CSV (an image, an archive) was echoed whole, terminal control bytes included, megabytes when it had no line break.
    /// </summary>
    private static string Shown(List<string> header)
    {
        const int MaxChars = 200;
        string text = string.Join(",", header);
        string shown = string.Create(Math.Min(text.Length, MaxChars), text, (span, t) =>
        {
            for (int i = 0; i < span.Length; i++) span[i] = char.IsControl(t[i]) ? '?' : t[i];
        });
        return text.Length > MaxChars ? shown + "..." : shown;
    }

    private static string Listed(List<string> items) =>
        string.Join(", ", items.Take(ListedInErrors)) + (items.Count > ListedInErrors ? $", ... ({items.Count - ListedInErrors} more)" : "");
}
