using QanaEdge.Model;
using QanaEdge.Model.Packaging;
using QanaEdge.Runtime;
using QanaEdge.TestSupport;

namespace QanaEdge.Imaging.Tests;

public class LesionClassifierTests
{
    private static readonly ModelPackage Qana = TestGraphs.QanaShaped(7);

    /// <summary>The same package with other calibration figures (and optionally colour gains).</summary>
    private static ModelPackage With(ModelPackage p, double tau, double referral, double flatCv = 0.15, float[]? gains = null, string? crop = null)
    {
        ModelManifest m = p.Manifest;
        return new ModelPackage
        {
            Graph = p.Graph,
            Manifest = new ModelManifest
            {
                ModelId = m.ModelId, Version = m.Version, CreatedUtc = m.CreatedUtc, Classes = m.Classes,
                Input = new InputSpec { Height = m.Input.Height, Width = m.Input.Width, Channels = m.Input.Channels, ColorGains = gains ?? m.Input.ColorGains, Crop = crop ?? m.Input.Crop },
                Profile = m.Profile, Layers = m.Layers, ConversionSuccessRate = m.ConversionSuccessRate, Metrics = m.Metrics,
                Golden = m.Golden, Provenance = m.Provenance,
                Calibration = new Calibration
                {
                    ReadoutWindow = m.Calibration.ReadoutWindow, Thresholds = m.Calibration.Thresholds, Beta = m.Calibration.Beta,
                    StepWeights = m.Calibration.StepWeights, TilingTau = tau, ReferralThreshold = referral, SaliencyFlatCv = flatCv,
                },
            },
        };
    }

    private static float[] Manual(ModelPackage package, IInferenceEngine engine, RgbImage image, CropBox view)
    {
        int size = package.Manifest.Input.Height;
        var px = new byte[size * size * 3];
        Resampler.AreaResize(image, view, size, px);
        Preprocessor.ApplyColorGains(px, package.Manifest.Input.ColorGains);
        var q = new sbyte[px.Length];
        InputQuantizer.Quantize(px, q);
        engine.Run(q);
        var p = new float[Classes.Count];
        engine.GetProbabilities(p);
        return p;
    }

    /// <summary>
    /// The head input a result carries is what the readout learner trains on: run through the package's own readout
    /// (head input → dense → spiking readout, as a readout update's graph), it gives exactly the probabilities of the
    /// classified view. An engine that does not keep the tensor is not asked for it (no second run per image).
    /// </summary>
    [Fact]
    public void The_head_input_of_a_result_reproduces_its_probabilities_through_the_readout_alone()
    {
        var package = PackageReader.Load(File.ReadAllBytes(Path.Combine(TestData.RepositoryRoot, "firmware-models", "qana-paper8-64.qana")));
        using var engine = LesionClassifier.CreateEngine(package);
        var classifier = new LesionClassifier(package, engine, new ClassifierOptions { Tiling = false });
        var head = ReadoutUpdates.Head(package);
        ModelPackage readout = ReadoutUpdates.Create(package, package.Manifest.Version, head.Weights!, head.WeightScales!, head.Bias!);
        using var readoutEngine = IntegerEngine.Create(readout, KernelMode.Reference);
        foreach (string file in Directory.GetFiles(TestData.Ham10000Images, "*.jpg").Order(StringComparer.Ordinal).Skip(300).Take(5))
        {
            LesionResult r = classifier.Classify(File.ReadAllBytes(file));
            Assert.NotNull(r.HeadInput);
            Assert.Equal(package.Graph.Tensors[head.Inputs[0]].Length, r.HeadInput!.Length);
            readoutEngine.Run(r.HeadInput);
            var p = new float[Classes.Count];
            readoutEngine.GetProbabilities(p);
            Assert.Equal(r.Probabilities, p);
        }
        // An engine that reuses the head input's bytes (no retained tensors, buffers shared) is not asked for it.
        using var plain = IntegerEngine.Create(package, KernelMode.Optimized);
        LesionResult other = new LesionClassifier(package, plain, new ClassifierOptions { Tiling = false })
            .Classify(File.ReadAllBytes(Directory.GetFiles(TestData.Ham10000Images, "*.jpg").Order(StringComparer.Ordinal).First()));
        Assert.Equal(plain.Keeps(head.Inputs[0]), other.HeadInput is not null);
    }

    /// <summary>
    /// The shipped package has a pooled head, so its saliency map is the class activation map: for the predicted class
    /// k, ReLU(Σ_c W[k, c]·A[h, w, c]) over the dequantized final feature map of the centred view.
    /// </summary>
    [Fact]
    public void The_shipped_packages_pooled_head_gives_the_class_activation_map()
    {
        var package = PackageReader.Load(File.ReadAllBytes(Path.Combine(TestData.RepositoryRoot, "firmware-models", "qana-paper8-64.qana")));
        HeadInfo head = Assert.IsType<HeadInfo>(HeadInfo.Find(package.Graph));
        Assert.True(head.Pooled);
        using var engine = (IntegerEngine)LesionClassifier.CreateEngine(package);
        var classifier = new LesionClassifier(package, engine, new ClassifierOptions { Saliency = true, SaliencyMap = true, Tiling = false });
        using var reference = (IntegerEngine)LesionClassifier.CreateEngine(package);
        foreach (string path in Samples.JpegPaths(3))
        {
            byte[] file = File.ReadAllBytes(path);
            LesionResult r = classifier.Classify(file);
            SaliencyMap map = Assert.IsType<SaliencyMap>(r.Saliency);
            Assert.Equal((8, 8), (map.Width, map.Height));

            RgbImage image = ImageDecoder.Decode(file);
            CropBox centred = CropBox.CenteredSquare(image.Width, image.Height);
            float[] p = Manual(package, reference, image, centred);
            int k = InferencePipeline.ArgMax(p, reference.Logits);
            ReadOnlySpan<sbyte> a = reference.Activation(head.FeatureTensor);
            var f = head.Feature;
            Assert.Equal(centred, map.Region);
            for (int cell = 0; cell < 64; cell++)
            {
                double sum = 0;
                for (int c = 0; c < f.Channels; c++)
                    sum += head.Head.Weights![k * f.Channels + c] * (a[cell * f.Channels + c] - f.ZeroPoint) * f.Scale;
                double expected = Math.Max(0, sum);
                Assert.True(Math.Abs(expected - map.Values[cell]) <= 1e-6 * Math.Max(1, expected), $"cell {cell}: {map.Values[cell]} vs {expected}");
            }
            Assert.Contains(map.Values, v => v > 0);
        }
    }

    [Fact]
    public void Real_jpegs_get_a_complete_result()
    {
        using var engine = LesionClassifier.CreateEngine(Qana);
        var classifier = new LesionClassifier(Qana, engine, new ClassifierOptions { Saliency = true, SaliencyMap = true });
        foreach (string path in Samples.JpegPaths(2))
        {
            byte[] file = File.ReadAllBytes(path);
            LesionResult r = classifier.Classify(file);
            Assert.Equal(7, r.Probabilities.Length);
            Assert.InRange(r.Probabilities.Sum(), 0.999f, 1.001f);
            // The label holds the top probability (ties of the saturated readout go to the higher logit).
            Assert.Equal(r.Probabilities.Max(), r.Probabilities[Classes.IndexOf(r.Label)]);
            Assert.Equal(r.Probabilities.Max(), r.Confidence);
            double malignancy = r.Probabilities[Classes.IndexOf("akiec")] + r.Probabilities[Classes.IndexOf("bcc")] + r.Probabilities[Classes.IndexOf("mel")];
            Assert.Equal(malignancy, r.MalignancyScore, 6);
            Assert.Equal(malignancy >= Qana.Manifest.Calibration.ReferralThreshold, r.Refer);
            Assert.True(new RgbImage(r.ImageWidth, r.ImageHeight, new byte[r.ImageWidth * r.ImageHeight * 3]).Contains(r.Crop));
            Assert.True(r.Events > 0);
            Assert.True(r.LatencyMs > 0);
            Assert.NotNull(r.Saliency); // the integer engine exposes the feature map
            Assert.Equal((8, 8), (r.Saliency!.Width, r.Saliency.Height));
            Assert.All(r.Saliency.Values, v => Assert.True(v >= 0));
            int expectedRuns = (r.CropReason == CropReason.Saliency ? 2 : 1) + (r.Tiled ? 4 : 0);
            Assert.Equal(expectedRuns, r.Runs);

            // Deterministic: the same bytes give the same answer.
            LesionResult again = classifier.Classify(file);
            Assert.Equal(r.Probabilities, again.Probabilities);
            Assert.Equal(r.Crop, again.Crop);
        }
    }

    [Fact]
    public void Without_saliency_or_tiling_it_is_exactly_the_centred_pipeline()
    {
        ModelPackage package = With(Qana, tau: 0, referral: 0.5, gains: [1.05f, 0.97f, 0.9f]);
        using var engine = IntegerEngine.Create(package);
        var classifier = new LesionClassifier(package, engine, new ClassifierOptions { Saliency = false });
        byte[] file = Samples.Jpeg(3);
        LesionResult r = classifier.Classify(file);
        RgbImage image = ImageDecoder.Decode(file);
        Assert.Equal(CropBox.CenteredSquare(image.Width, image.Height), r.Crop);
        Assert.Equal(CropReason.Centred, r.CropReason);
        Assert.False(r.Tiled);
        Assert.Equal(1, r.Runs);
        using var oracle = IntegerEngine.Create(package, KernelMode.Reference);
        Assert.Equal(Manual(package, oracle, image, r.Crop), r.Probabilities);
    }

    [Fact]
    public void Under_tau_the_view_is_averaged_with_four_tiles_in_dequantized_logits()
    {
        ModelPackage package = With(Qana, tau: 1.01, referral: 0.5); // every result is unsure enough to tile
        using var engine = IntegerEngine.Create(package);
        var classifier = new LesionClassifier(package, engine, new ClassifierOptions { Saliency = false });
        byte[] file = Samples.Jpeg(5);
        LesionResult r = classifier.Classify(file);
        Assert.True(r.Tiled);
        Assert.Equal(5, r.Runs);

        // Recompute by hand: mean of the real logits of the view and its four tiles, requantized, read out.
        RgbImage image = ImageDecoder.Decode(file);
        var spec = package.Graph.Tensors[package.Graph.LogitsTensor];
        var sum = new double[7];
        using var oracle = IntegerEngine.Create(package, KernelMode.Reference);
        foreach (CropBox view in new[] { r.Crop }.Concat(Tiling.Tiles(r.Crop)))
        {
            Manual(package, oracle, image, view);
            for (int k = 0; k < 7; k++) sum[k] += spec.Scale * (oracle.Logits[k] - spec.ZeroPoint);
        }
        var q = sum.Select(s => (sbyte)Math.Clamp(spec.ZeroPoint + Math.Round(s / 5 / spec.Scale, MidpointRounding.AwayFromZero), -128, 127)).ToArray();
        var readout = package.Graph.Nodes.Single(n => n.Kind == Model.Graph.OpKind.SpikingReadout);
        var expected = new float[7];
        SpikingReadout.Probabilities(q, readout.Thresholds, readout.TimeSteps, package.Manifest.Calibration.Beta, [], expected);
        Assert.Equal(expected, r.Probabilities);

        // τ = 0 never tiles.
        ModelPackage sure = With(Qana, tau: 0, referral: 0.5);
        using var engine2 = IntegerEngine.Create(sure);
        Assert.False(new LesionClassifier(sure, engine2).Classify(file).Tiled);
    }

    /// <summary>
    /// The symmetry fallback equals classifying the rotated and mirrored images themselves: on a square real photograph
    /// twice the input size (so the area resample is an exact 2×2 average and commutes with every symmetry), the
    /// result is the mean of the eight images' real logits, requantized and read out. It replaces tiling, and under
    /// its τ nothing extra runs.
    /// </summary>
    [Fact]
    public void Under_its_tau_the_symmetry_fallback_averages_the_eight_rotations_and_mirrors()
    {
        ModelPackage shipped = PackageReader.Load(File.ReadAllBytes(Path.Combine(TestData.RepositoryRoot, "firmware-models", "qana-paper8-64.qana")));
        ModelPackage package = With(shipped, tau: 1.01, referral: 0.5); // tiling would fire on every image
        int side = 2 * package.Manifest.Input.Height;
        RgbImage photo = ImageDecoder.Decode(File.ReadAllBytes(Directory.GetFiles(TestData.Ham10000Images, "*.jpg").Order(StringComparer.Ordinal).Skip(40).First()));
        RgbImage image = Transformed(photo, side, (x, y) => (x + (photo.Width - side) / 2, y + (photo.Height - side) / 2));
        using var engine = IntegerEngine.Create(package);
        var classifier = new LesionClassifier(package, engine, new ClassifierOptions { Saliency = false, Symmetries = true, SymmetryTau = 1.01 });
        LesionResult r = classifier.Classify(image);
        Assert.True(r.Symmetrized);
        Assert.False(r.Tiled);
        Assert.Equal(8, r.Runs);

        var spec = package.Graph.Tensors[package.Graph.LogitsTensor];
        var sum = new double[7];
        using var oracle = IntegerEngine.Create(package, KernelMode.Reference);
        var views = new List<sbyte[]>();
        foreach (Func<int, int, (int, int)> symmetry in new Func<int, int, (int, int)>[]
        {
            (x, y) => (x, y), (x, y) => (side - 1 - x, y), (x, y) => (x, side - 1 - y), (x, y) => (side - 1 - x, side - 1 - y),
            (x, y) => (y, x), (x, y) => (y, side - 1 - x), (x, y) => (side - 1 - y, x), (x, y) => (side - 1 - y, side - 1 - x),
        })
        {
            Manual(package, oracle, Transformed(image, side, symmetry), CropBox.CenteredSquare(side, side));
            views.Add(oracle.Logits.ToArray());
            for (int k = 0; k < 7; k++) sum[k] += spec.Scale * (oracle.Logits[k] - spec.ZeroPoint);
        }
        Assert.True(views.Skip(1).Any(v => !v.SequenceEqual(views[0])), "the model should see the symmetries as different inputs");
        var q = sum.Select(s => (sbyte)Math.Clamp(spec.ZeroPoint + Math.Round(s / 8 / spec.Scale, MidpointRounding.AwayFromZero), -128, 127)).ToArray();
        var readout = package.Graph.Nodes.Single(n => n.Kind == Model.Graph.OpKind.SpikingReadout);
        var expected = new float[7];
        SpikingReadout.Probabilities(q, readout.Thresholds, readout.TimeSteps, package.Manifest.Calibration.Beta, package.Manifest.Calibration.StepWeights, expected);
        Assert.Equal(expected, r.Probabilities);

        // τ = 0: one run, neither fallback.
        LesionResult sure = new LesionClassifier(package, engine, new ClassifierOptions { Saliency = false, Symmetries = true, SymmetryTau = 0 }).Classify(image);
        Assert.False(sure.Symmetrized || sure.Tiled);
        Assert.Equal(1, sure.Runs);
    }

    /// <summary>A side × side image whose pixel (x, y) is <paramref name="source"/>'s pixel at from(x, y).</summary>
    private static RgbImage Transformed(RgbImage source, int side, Func<int, int, (int X, int Y)> from)
    {
        var px = new byte[side * side * 3];
        for (int y = 0; y < side; y++)
            for (int x = 0; x < side; x++)
            {
                (int sx, int sy) = from(x, y);
                Array.Copy(source.Pixels, (sy * source.Width + sx) * 3, px, (y * side + x) * 3, 3);
            }
        return new RgbImage(side, side, px);
    }

    [Fact]
    public void The_referral_threshold_decides_refer()
    {
        byte[] file = Samples.Jpeg(2);
        ModelPackage always = With(Qana, tau: 0, referral: 0.0);
        ModelPackage never = With(Qana, tau: 0, referral: 1.01);
        using var e1 = IntegerEngine.Create(always);
        using var e2 = IntegerEngine.Create(never);
        Assert.True(new LesionClassifier(always, e1).Classify(file).Refer);
        Assert.False(new LesionClassifier(never, e2).Classify(file).Refer);
    }

    [Fact]
    public void A_saliency_crop_is_classified_on_its_own_run()
    {
        // With a zero flatness threshold only the centre test can reject the map; search a few images for one
        // whose peak is off-centre and check that the crop it reports is the view that was classified.
        ModelPackage package = With(Qana, tau: 0, referral: 0.5, flatCv: 0);
        using var engine = LesionClassifier.CreateEngine(package);
        var classifier = new LesionClassifier(package, engine, new ClassifierOptions { Saliency = true });
        using var oracle = IntegerEngine.Create(package, KernelMode.Reference);
        int seen = 0;
        foreach (string path in Samples.JpegPaths(12))
        {
            byte[] file = File.ReadAllBytes(path);
            LesionResult r = classifier.Classify(file);
            RgbImage image = ImageDecoder.Decode(file);
            if (r.CropReason != CropReason.Saliency)
            {
                Assert.Equal(CropReason.PeakNearCentre, r.CropReason);
                Assert.Equal(CropBox.CenteredSquare(image.Width, image.Height), r.Crop);
                continue;
            }
            seen++;
            Assert.Equal(2, r.Runs);
            Assert.Equal(Manual(package, oracle, image, r.Crop), r.Probabilities);
            Assert.InRange(r.Crop.Size, image.Width / 2, image.Width);
            if (seen == 2) break;
        }
        Assert.True(seen > 0, "no image of twelve had an off-centre Grad-CAM peak");
    }

    [Theory]
    [InlineData(InputCrop.Centre)]
    [InlineData(InputCrop.Saliency)]
    public void By_default_the_view_is_cut_the_way_the_package_was_trained(string crop)
    {
        // Flatness 0: only the centre test can turn a saliency decision into the centred fallback.
        ModelPackage package = With(Qana, tau: 0, referral: 0.5, flatCv: 0, crop: crop);
        using var engine = LesionClassifier.CreateEngine(package);
        var classifier = new LesionClassifier(package, engine);
        foreach (string path in Samples.JpegPaths(4))
        {
            LesionResult r = classifier.Classify(File.ReadAllBytes(path));
            if (crop == InputCrop.Centre) Assert.Equal(CropReason.Centred, r.CropReason);
            else Assert.NotEqual(CropReason.Centred, r.CropReason); // a saliency decision: a crop or a named fallback
        }
    }

    /// <summary>The map is given only on request (for an overlay), whichever the crop; with the centred crop it is the
    /// map of the centred view that a saliency decision reads, and asking for it changes nothing else.</summary>
    [Fact]
    public void With_the_centred_crop_the_map_of_the_centred_view_is_given_on_request()
    {
        ModelPackage package = With(Qana, tau: 0, referral: 0.5, crop: InputCrop.Centre);
        using var engine = LesionClassifier.CreateEngine(package);
        var plain = new LesionClassifier(package, engine);
        var mapped = new LesionClassifier(package, engine, new ClassifierOptions { SaliencyMap = true });
        var chooser = new LesionClassifier(package, engine, new ClassifierOptions { Saliency = true, SaliencyMap = true });
        var blind = new LesionClassifier(package, engine, new ClassifierOptions { Saliency = true });
        foreach (string path in Samples.JpegPaths(3))
        {
            byte[] file = File.ReadAllBytes(path);
            LesionResult a = plain.Classify(file), b = mapped.Classify(file), c = chooser.Classify(file), d = blind.Classify(file);
            Assert.Null(a.Saliency);
            Assert.Null(d.Saliency);
            Assert.Equal((c.Crop, c.CropReason, c.Label, c.Runs, c.Events), (d.Crop, d.CropReason, d.Label, d.Runs, d.Events));
            Assert.Equal(c.Probabilities, d.Probabilities);
            Assert.Equal(CropReason.Centred, b.CropReason);
            Assert.Equal((a.Crop, a.Label, a.Runs, a.Events), (b.Crop, b.Label, b.Runs, b.Events));
            Assert.Equal(a.Probabilities, b.Probabilities);
            SaliencyMap map = Assert.IsType<SaliencyMap>(b.Saliency);
            Assert.Equal(b.Crop, map.Region);
            Assert.Equal(c.Saliency!.Values, map.Values);
        }
    }

    /// <summary>
    /// The fallbacks cost runs, not garbage: once warm, a tiled result, a saliency-crop result (with and without
    /// tiling) and a symmetrized one allocate exactly what a plain centred result does (the result, its probabilities and head input); the
    /// tiles, the Grad-CAM map and the crop's flood fill use buffers the classifier owns.
    /// </summary>
    [Fact]
    public void The_tiling_and_saliency_paths_allocate_no_more_than_a_single_view()
    {
        ModelPackage centred = With(Qana, tau: 0, referral: 0.5, flatCv: 0);
        ModelPackage unsure = With(Qana, tau: 1.01, referral: 0.5, flatCv: 0);
        using var centredEngine = LesionClassifier.CreateEngine(centred);
        using var unsureEngine = LesionClassifier.CreateEngine(unsure);
        var single = new LesionClassifier(centred, centredEngine, new ClassifierOptions { Saliency = false });
        var tiled = new LesionClassifier(unsure, unsureEngine, new ClassifierOptions { Saliency = false });
        var cropped = new LesionClassifier(centred, centredEngine, new ClassifierOptions { Saliency = true });
        var both = new LesionClassifier(unsure, unsureEngine, new ClassifierOptions { Saliency = true });
        var turned = new LesionClassifier(centred, centredEngine, new ClassifierOptions { Saliency = false, Symmetries = true, SymmetryTau = 1.01 });
        int seen = 0;
        foreach (string path in Samples.JpegPaths(12))
        {
            RgbImage image = ImageDecoder.Decode(File.ReadAllBytes(path));
            if (cropped.Classify(image).CropReason != CropReason.Saliency) continue;
            seen++;
            long plain = Allocated(single, image, r => Assert.Equal((CropReason.Centred, false, 1), (r.CropReason, r.Tiled, r.Runs)));
            Assert.Equal(plain, Allocated(tiled, image, r => Assert.Equal((CropReason.Centred, true, 5), (r.CropReason, r.Tiled, r.Runs))));
            Assert.Equal(plain, Allocated(cropped, image, r => Assert.Equal((CropReason.Saliency, false, 2), (r.CropReason, r.Tiled, r.Runs))));
            Assert.Equal(plain, Allocated(both, image, r => Assert.Equal((CropReason.Saliency, true, 6), (r.CropReason, r.Tiled, r.Runs))));
            Assert.Equal(plain, Allocated(turned, image, r => Assert.Equal((true, 8), (r.Symmetrized, r.Runs))));
            if (seen == 2) break;
        }
        Assert.True(seen > 0, "no image of twelve had an off-centre Grad-CAM peak");
    }

    /// <summary>Managed bytes one warm <see cref="LesionClassifier.Classify(RgbImage)"/> allocates; the result is checked
    /// to have taken the path meant.</summary>
    private static long Allocated(LesionClassifier classifier, RgbImage image, Action<LesionResult> check)
    {
        classifier.Classify(image);
        classifier.Classify(image);
        LesionResult? r = null;
        long allocated = Allocations.OnThisThread(() => r = classifier.Classify(image));
        check(r!);
        return allocated;
    }

    [Fact]
    public void Bad_images_are_rejected_with_their_reason()
    {
        using var engine = IntegerEngine.Create(Qana);
        var classifier = new LesionClassifier(Qana, engine);
        var e = Assert.Throws<ImageRejectedException>(() => classifier.Classify("not an image"u8));
        Assert.Equal(RejectReason.NotAnImage, e.Reason);
    }

    [Fact]
    public void Training_preprocessing_matches_the_classifier_input()
    {
        byte[] file = Samples.Jpeg(4);
        var a = new byte[64 * 64 * 3];
        CropBox crop = Preprocessor.PrepareCentered(file, 64, a);
        RgbImage image = ImageDecoder.Decode(file);
        var b = new byte[64 * 64 * 3];
        Resampler.AreaResize(image, CropBox.CenteredSquare(image.Width, image.Height), 64, b);
        Assert.Equal(b, a);
        Assert.Equal(CropBox.CenteredSquare(image.Width, image.Height), crop);

        using var engine = IntegerEngine.Create(Qana);
        var dst = new byte[64 * 64 * 3];
        CropDecision d = Preprocessor.PrepareSaliency(image, engine, 64, dst);
        var expected = new byte[dst.Length];
        Resampler.AreaResize(image, d.Crop, 64, expected);
        Assert.Equal(expected, dst);
    }
}
