using System.CommandLine;
using System.Globalization;
using QanaEdge.Model;
using QanaEdge.Training.Data;

namespace QanaEdge.Cli.Commands;

/// <summary>
/// <c>qana split --images DIR --labels CSV --out DIR [--seed N]</c>: the seeded, class-stratified,
/// lesion-grouped 70/10/20 split, written as train.csv, val.csv and test.csv in the HAM10000 format
/// (the shipped split lives in firmware-models/splits/, made by <c>make splits</c>).
/// </summary>
public sealed class SplitCommand : IVerb
{
    public Command Create(CliContext context)
    {
        var images = new Option<string>("--images") { Description = "folder of the images (IMAGE_ID.jpg)", Required = true };
        var labels = new Option<string>("--labels") { Description = "label CSV with image_id, lesion_id and dx", Required = true };
        var output = new Option<string>("--out") { Description = "folder for train.csv, val.csv, test.csv", Required = true };
        var seed = new Option<ulong>("--seed") { Description = "split seed", DefaultValueFactory = _ => LesionSplit.DefaultSeed };
        var command = new Command("split", "Write the lesion-grouped, stratified 70/10/20 train/validation/test split as CSV files.")
            { images, labels, output, seed };
        command.SetAction(parse =>
        {
            Files.RefuseEmpty(parse.GetRequiredValue(output), "--out");
            LesionSplit split;
            try
            {
                var rows = Ham10000Index.Load(parse.GetRequiredValue(images), parse.GetRequiredValue(labels));
                split = LesionSplit.Create(rows, parse.GetValue(seed));
            }
            catch (DatasetException e) { throw new CommandFailedException(e.Message); }
            string dir = parse.GetRequiredValue(output);
            // Splitting a split again (--labels DIR/train.csv --out DIR) wrote the new train.csv over the labels it read.
            foreach (var (part, _) in split.CsvFiles)
                Files.RefuseInputAsOutput(Path.Combine(dir, part), "--out", parse.GetRequiredValue(labels), "--labels", $"the split's {part} would replace the labels");
            try { Directory.CreateDirectory(dir); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new CommandFailedException($"cannot create '{dir}': {Cli.OneLine(e.Message)}");
            }
            // All three targets are checked before any is written, and each is written whole (beside, then renamed):
            // a failure partway used to leave the files of two different splits side by side.
            var parts = split.CsvFiles.Select(f => (Path: Files.CheckWritable(Path.Combine(dir, f.FileName)), f.Rows)).ToArray();
            foreach (var (path, rows) in parts) Files.WriteAtomically(path, Ham10000Index.ToBytes(rows));
            context.Out.WriteLine($"seed {split.Seed}: written to {dir}");
            context.Out.WriteLine($"{"part",-6} {"images",6} {"lesions",7}  {string.Join(" ", Classes.Codes.Select(c => c.PadLeft(5)))}");
            foreach (var (name, rows) in new[] { ("train", split.Train), ("val", split.Validation), ("test", split.Test) })
            {
                var counts = Ham10000Index.ClassCounts(rows);
                context.Out.WriteLine($"{name,-6} {rows.Count,6} {rows.Select(r => r.LesionId).Distinct().Count(),7}  {string.Join(" ", counts.Select(c => c.ToString(CultureInfo.InvariantCulture).PadLeft(5)))}");
            }
            return Cli.Ok;
        });
        return command;
    }
}
