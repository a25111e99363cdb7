using System.Text.Json;
using QanaEdge.Model.Packaging;
using QanaEdge.TestSupport;

namespace QanaEdge.Cli.Tests;

/// <summary><c>qana classify</c> end to end on real JPEGs with a package built in code.</summary>
public sealed class ClassifyCommandTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("qana-classify-").FullName;
    private readonly string _package;

    public ClassifyCommandTests()
    {
        _package = Path.Combine(_dir, "test.qana");
        PackageWriter.Save(TestGraphs.QanaShaped(3), _package);
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    internal static string[] Jpegs(int count)
    {
        // <repo>/../shared/data/ham10000, also when the repository sits deeper than the shared folder.
        for (var dir = new DirectoryInfo(TestData.RepositoryRoot).Parent; dir is not null; dir = dir.Parent)
        {
            string images = Path.Combine(dir.FullName, "shared", "data", "ham10000", "images");
            if (Directory.Exists(images))
                return Directory.GetFiles(images, "*.jpg").Order(StringComparer.Ordinal).Take(count).ToArray();
        }
        throw new DirectoryNotFoundException("shared/data/ham10000/images not found above the repository");
    }

    private static (int Code, string Out, string Err) Qana(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int code = Cli.Run(args, output, error);
        return (code, output.ToString(), error.ToString());
    }

    [Fact]
    public void Json_gives_one_object_per_image_with_the_contract_fields()
    {
        string[] images = Jpegs(2);
        var (code, stdout, stderr) = Qana(["classify", .. images, "--model", _package, "--json"]);
        Assert.Equal(0, code);
        Assert.Equal("", stderr);
        string[] lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, lines.Length);
        for (int i = 0; i < lines.Length; i++)
        {
            using JsonDocument doc = JsonDocument.Parse(lines[i]);
            JsonElement r = doc.RootElement;
            Assert.Equal(images[i], r.GetProperty("image").GetString());
            JsonElement p = r.GetProperty("probabilities");
            Assert.Equal(["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"], p.EnumerateObject().Select(o => o.Name).ToArray());
            double sum = p.EnumerateObject().Sum(o => o.Value.GetDouble());
            Assert.InRange(sum, 0.999, 1.001);
            string label = r.GetProperty("label").GetString()!;
            Assert.Equal(p.GetProperty(label).GetDouble(), r.GetProperty("confidence").GetDouble(), 5);
            Assert.Equal(p.EnumerateObject().Max(o => o.Value.GetDouble()), r.GetProperty("confidence").GetDouble(), 5);
            _ = r.GetProperty("tiled").GetBoolean();
            _ = r.GetProperty("refer").GetBoolean();
            JsonElement crop = r.GetProperty("crop");
            Assert.True(crop.GetProperty("size").GetInt32() > 0);
            Assert.Contains(r.GetProperty("crop_reason").GetString(), new[] { "centred", "saliency", "peak_near_centre", "flat_map" });
            Assert.True(r.GetProperty("latency_ms").GetDouble() > 0);
            Assert.True(r.GetProperty("events").GetInt64() > 0);
        }
    }

    [Fact]
    public void A_bad_image_among_good_ones_is_one_stderr_line_and_one_json_object_and_exit_1()
    {
        string text = Path.Combine(_dir, "notes.jpg");
        File.WriteAllText(text, "this is not a picture");
        string good = Jpegs(1)[0];
        string missing = Path.Combine(_dir, "missing.png");
        var (code, stdout, stderr) = Qana("classify", good, text, missing, "--model", _package, "--json");
        Assert.Equal(1, code);
        string[] errors = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, errors.Length);
        Assert.Contains("notes.jpg: rejected (not_an_image)", errors[0]);
        Assert.Contains("missing.png: not found", errors[1]);
        Assert.DoesNotContain("   at ", stderr);
        // One object per image, in order: the bad ones say why, as standard error does. Before, they had none, and a
        // program reading the lines could not tell which images its results were for without matching names.
        string[] lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal([good, text, missing], lines.Select(l => JsonDocument.Parse(l).RootElement.GetProperty("image").GetString()));
        Assert.Contains(JsonDocument.Parse(lines[0]).RootElement.GetProperty("label").GetString(), new[] { "akiec", "bcc", "bkl", "df", "mel", "nv", "vasc" });
        JsonElement rejected = JsonDocument.Parse(lines[1]).RootElement, absent = JsonDocument.Parse(lines[2]).RootElement;
        Assert.Equal("not_an_image", rejected.GetProperty("reason").GetString());
        Assert.Equal(errors[0], $"qana: {text}: {rejected.GetProperty("error").GetString()}");
        Assert.Equal(JsonValueKind.Null, absent.GetProperty("reason").ValueKind);
        Assert.Equal(errors[1], $"qana: {missing}: {absent.GetProperty("error").GetString()}");
        Assert.False(rejected.TryGetProperty("label", out _));
    }

    /// <summary>The package given where the images go (<c>qana classify PKG IMAGE</c>, <c>--model</c> left out): the
    /// error says it is a model package and how to give it, not only that it has no image signature.</summary>
    [Fact]
    public void A_package_given_as_an_image_is_named_as_one()
    {
        string good = Jpegs(1)[0];
        var (code, stdout, stderr) = Qana("classify", _package, good, "--model", _package);
        Assert.Equal(1, code);
        Assert.Contains(good, Assert.Single(stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries)));
        Assert.Equal($"qana: {_package}: rejected (not_an_image): no known image signature; it is a model package: give it with --model",
            Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries)));
    }

    /// <summary>A file that reports no size and never ends (a device, a pipe) is held to the size limit as it is read:
    /// /dev/zero used to be read until memory ran out, an internal error that also ended the run.</summary>
    [Fact]
    public void An_endless_file_is_rejected_as_too_large_and_the_next_image_still_runs()
    {
        if (!File.Exists("/dev/zero")) return;
        string good = Jpegs(1)[0];
        var (code, stdout, stderr) = Qana("classify", "/dev/zero", good, "--model", _package);
        Assert.Equal(1, code);
        Assert.Contains(good, Assert.Single(stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries)));
        Assert.StartsWith("qana: /dev/zero: rejected (too_large)", Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries)));
    }

    [Fact]
    public void The_saliency_option_writes_a_png_over_the_image()
    {
        string image = Jpegs(1)[0];
        string overlay = Path.Combine(_dir, "heat.png");
        var (code, _, stderr) = Qana("classify", image, "--model", _package, "--saliency", overlay);
        Assert.Equal(0, code);
        Assert.Equal("", stderr);
        Imaging.RgbImage png = Imaging.ImageDecoder.Decode(File.ReadAllBytes(overlay));
        Imaging.RgbImage source = Imaging.ImageDecoder.Decode(File.ReadAllBytes(image));
        Assert.Equal((source.Width, source.Height), (png.Width, png.Height));
        Assert.NotEqual(source.Pixels, png.Pixels);
    }

    /// <summary>The test package, like every trained one, records the centred crop: the overlay still carries the
    /// heat map over the crop, not only the crop's outline.</summary>
    [Fact]
    public void The_saliency_overlay_of_a_centred_package_carries_the_heat_map()
    {
        Assert.Equal(InputCrop.Centre, PackageReader.Load(_package).Manifest.Input.Crop);
        string image = Jpegs(1)[0];
        string overlay = Path.Combine(_dir, "centred.png");
        var (code, stdout, stderr) = Qana("classify", image, "--model", _package, "--saliency", overlay, "--json");
        Assert.True(code == 0, stderr);
        using JsonDocument doc = JsonDocument.Parse(stdout);
        JsonElement crop = doc.RootElement.GetProperty("crop");
        int x0 = crop.GetProperty("x").GetInt32(), y0 = crop.GetProperty("y").GetInt32(), side = crop.GetProperty("size").GetInt32();
        Imaging.RgbImage png = Imaging.ImageDecoder.Decode(File.ReadAllBytes(overlay));
        Imaging.RgbImage source = Imaging.ImageDecoder.Decode(File.ReadAllBytes(image));
        // Inside the crop, away from its outline, the heat colours are blended into every pixel.
        int inside = 0, changed = 0;
        for (int y = y0 + 10; y < y0 + side - 10; y++)
        for (int x = x0 + 10; x < x0 + side - 10; x++, inside++)
        {
            int o = (y * source.Width + x) * 3;
            if (png.Pixels[o] != source.Pixels[o] || png.Pixels[o + 1] != source.Pixels[o + 1] || png.Pixels[o + 2] != source.Pixels[o + 2]) changed++;
        }
        Assert.True(changed > 0.9 * inside, $"{changed} of {inside} pixels inside the crop carry the map");
    }

    [Fact]
    public void Without_any_package_it_says_so_in_one_line()
    {
        string image = Jpegs(1)[0];
        var (code, _, stderr) = Qana("classify", image, "--model", Path.Combine(_dir, "absent.qana"));
        Assert.Equal(1, code);
        Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("absent.qana", stderr);
    }

    [Fact]
    public void Two_images_of_the_same_name_in_different_folders_keep_both_overlays()
    {
        string image = Jpegs(1)[0];
        foreach (string folder in (string[])["a", "b"])
        {
            Directory.CreateDirectory(Path.Combine(_dir, folder));
            File.Copy(image, Path.Combine(_dir, folder, "x.jpg"));
        }
        string overlay = Path.Combine(_dir, "heat.png");
        var (code, _, stderr) = Qana("classify", Path.Combine(_dir, "a", "x.jpg"), Path.Combine(_dir, "b", "x.jpg"), "--model", _package, "--saliency", overlay);
        Assert.True(code == 0, stderr);
        Assert.True(File.Exists(Path.Combine(_dir, "heat.x.png")) && File.Exists(Path.Combine(_dir, "heat.x.2.png")),
            string.Join(' ', Directory.GetFiles(_dir).Select(Path.GetFileName)));
    }

    [Fact]
    public void The_symmetries_option_gives_what_the_classifier_gives_with_symmetries()
    {
        string[] images = Jpegs(6);
        var (code, stdout, stderr) = Qana(["classify", .. images, "--model", _package, "--json", "--symmetries"]);
        Assert.True(code == 0, stderr);
        ModelPackage package = PackageReader.Load(_package);
        using var engine = Imaging.LesionClassifier.CreateEngine(package);
        var direct = new Imaging.LesionClassifier(package, engine, new Imaging.ClassifierOptions { Symmetries = true });
        string[] lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(images.Length, lines.Length);
        for (int i = 0; i < images.Length; i++)
        {
            using JsonDocument doc = JsonDocument.Parse(lines[i]);
            Imaging.LesionResult expected = direct.Classify(File.ReadAllBytes(images[i]));
            Assert.Equal(expected.Label, doc.RootElement.GetProperty("label").GetString());
            Assert.Equal(expected.Symmetrized, doc.RootElement.TryGetProperty("symmetrized", out JsonElement s) && s.GetBoolean());
            Assert.False(doc.RootElement.GetProperty("tiled").GetBoolean());
        }
    }

    /// <summary>An overlay that cannot be written (here its name is taken by a folder) fails that image in one line naming
    /// the overlay, and leaves no temporary file beside it.</summary>
    [Fact]
    public void An_overlay_that_cannot_be_written_leaves_no_temporary_file()
    {
        string[] images = Jpegs(2);
        string overlay = Path.Combine(_dir, "heat.png");
        string blocked = Commands.ClassifyCommand.OverlayPath(overlay, images[1], 2);
        Directory.CreateDirectory(blocked);
        var (code, _, stderr) = Qana(["classify", .. images, "--model", _package, "--saliency", overlay]);
        Assert.Equal(1, code);
        string error = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains($"cannot write '{blocked}'", error);
        Assert.Empty(Directory.GetFiles(_dir, "*.tmp*"));
    }

    /// <summary>A folder given for --saliency is refused with several images as with one; it used to become the prefix
    /// of hidden files (DIR/.IMAGE.png).</summary>
    [Fact]
    public void A_folder_given_for_the_overlay_is_refused_with_several_images()
    {
        string[] images = Jpegs(2);
        string folder = Directory.CreateDirectory(Path.Combine(_dir, "overlays")).FullName;
        foreach (string given in (string[])[folder, folder + Path.DirectorySeparatorChar])
        {
            var (code, stdout, stderr) = Qana(["classify", .. images, "--model", _package, "--saliency", given]);
            Assert.Equal(1, code);
            Assert.Equal("", stdout);
            Assert.Contains("is a folder", Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries)));
            Assert.Empty(Directory.GetFileSystemEntries(folder));
        }
    }

    [Fact]
    public void Several_overlays_get_one_file_each() =>
        Assert.Equal(Path.Combine("out", "heat.ISIC_1.png"), Commands.ClassifyCommand.OverlayPath(Path.Combine("out", "heat.png"), "/x/ISIC_1.jpg", 2));
}
