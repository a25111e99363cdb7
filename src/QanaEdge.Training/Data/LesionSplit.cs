using QanaEdge.Model;

namespace QanaEdge.Training.Data;

/// <summary>
/// A train/validation/test partition in which every image of a lesion lands in the same part (HAM10000
/// holds several images of many lesions: splitting per image leaks the test set), stratified by class.
/// </summary>
public sealed class LesionSplit
{
    public const double DefaultTrain = 0.7, DefaultValidation = 0.1, DefaultTest = 0.2;
    /// <summary>The seed of the split the shipped model trains on (firmware-models/splits/).</summary>
    public const ulong DefaultSeed = 20180814;

    public IReadOnlyList<Ham10000Row> Train { get; }
    public IReadOnlyList<Ham10000Row> Validation { get; }
    public IReadOnlyList<Ham10000Row> Test { get; }
    public ulong Seed { get; }

    private LesionSplit(List<Ham10000Row> train, List<Ham10000Row> val, List<Ham10000Row> test, ulong seed)
    {
        Train = train; Validation = val; Test = test; Seed = seed;
    }

    /// <summary>
    /// Splits rows into parts of the given image fractions. Lesions are the unit: a lesion's class is its
    /// images' most frequent dx (HAM10000 gives every image of a lesion the same dx). Within each class the
    /// lesions are put in a seeded random order (after sorting by lesion_id, so the input order does not
    /// matter) and each goes to the part whose image count is furthest below its target for that class;
    /// each class's parts therefore land within one lesion's images of their target.
    /// </summary>
    public static LesionSplit Create(IReadOnlyList<Ham10000Row> rows, ulong seed = DefaultSeed,
        double train = DefaultTrain, double validation = DefaultValidation, double test = DefaultTest)
    {
        ArgumentNullException.ThrowIfNull(rows);
        if (train < 0 || validation < 0 || test < 0 || Math.Abs(train + validation + test - 1.0) > 1e-9)
            throw new DatasetException($"split fractions must be non-negative and sum to 1 (got {train}/{validation}/{test})");
        if (rows.Count == 0) throw new DatasetException("cannot split an empty data set");
        var noLesion = rows.FirstOrDefault(r => r.LesionId is null);
        if (noLesion is not null)
            throw new DatasetException($"image {noLesion.ImageId} has no lesion_id: a lesion-grouped split needs the lesion_id column");

        var lesions = rows.GroupBy(r => r.LesionId!, StringComparer.Ordinal)
            .Select(g => (Id: g.Key, Rows: g.ToList(),
                Class: LesionClass(g.Select(r => r.ClassIndex))))
            .ToList();

        double[] fractions = [train, validation, test];
        var parts = new[] { new List<Ham10000Row>(), new List<Ham10000Row>(), new List<Ham10000Row>() };
        var rng = new SeededRandom(seed);
        for (int cls = 0; cls < Classes.Count; cls++)
        {
            var inClass = lesions.Where(l => l.Class == cls).OrderBy(l => l.Id, StringComparer.Ordinal).ToArray();
            rng.Shuffle(inClass.AsSpan());
            int total = inClass.Sum(l => l.Rows.Count);
            var assigned = new int[3];
            foreach (var lesion in inClass)
            {
                // The part with the largest shortfall (target minus assigned images) takes the lesion;
                // ties go to the earlier part, so train fills first.
                int best = 0; double bestDeficit = double.NegativeInfinity;
                for (int p = 0; p < 3; p++)
                {
                    if (fractions[p] == 0) continue;
                    double deficit = fractions[p] * total - assigned[p];
                    if (deficit > bestDeficit + 1e-12) { bestDeficit = deficit; best = p; }
                }
                assigned[best] += lesion.Rows.Count;
                parts[best].AddRange(lesion.Rows);
            }
        }
        foreach (var p in parts) p.Sort((a, b) => string.CompareOrdinal(a.ImageId, b.ImageId));
        return new LesionSplit(parts[0], parts[1], parts[2], seed);
    }

    /// <summary>
    /// The class a lesion counts as, from the class indices of its images: the most frequent, the smaller index on a tie
    /// (HAM10000 gives every image of a lesion the same dx; other data sets need not).
    /// </summary>
    public static int LesionClass(IEnumerable<int> imageClasses) =>
        imageClasses.GroupBy(c => c).OrderByDescending(g => g.Count()).ThenBy(g => g.Key).First().Key;

    /// <summary>The split's files: train.csv, val.csv and test.csv, each with its rows.</summary>
    public (string FileName, IReadOnlyList<Ham10000Row> Rows)[] CsvFiles =>
        [("train.csv", Train), ("val.csv", Validation), ("test.csv", Test)];

    /// <summary>Writes <see cref="CsvFiles"/> (HAM10000 format) into a folder.</summary>
    public void WriteCsv(string directory)
    {
        Directory.CreateDirectory(directory);
        foreach (var (name, rows) in CsvFiles) Ham10000Index.Write(Path.Combine(directory, name), rows);
    }
}
