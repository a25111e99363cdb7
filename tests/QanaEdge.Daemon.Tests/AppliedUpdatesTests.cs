using System.Buffers.Binary;
using System.Security.Cryptography;
using Microsoft.Extensions.Logging.Abstractions;
using QanaEdge.Daemon.Classification;
using QanaEdge.Daemon.Configuration;
using QanaEdge.Daemon.Tests.Infrastructure;
using QanaEdge.Daemon.Updates;
using QanaEdge.Model.Graph;
using QanaEdge.Model.Packaging;
using QanaEdge.Runtime;
using QanaEdge.TestSupport;

namespace QanaEdge.Daemon.Tests;

/// <summary>
/// The applied updates under a real temporary state folder, through <see cref="ModelUpdates"/> and back through its
/// start: learned readouts a later one supersedes are pruned, and a folder flush that fails after <c>active</c> was
/// renamed leaves the update applied, with a warning, rather than reported as not stored.
/// </summary>
public sealed class AppliedUpdatesTests : IDisposable
{
    private static readonly string ShippedPath = Path.Combine(TestData.RepositoryRoot, "firmware-models", "qana-paper8-64.qana");
    private static readonly ModelPackage Shipped = PackageReader.Load(ShippedPath);
    private static readonly EngineChoice Managed = new(false, "managed integer engine");
    private readonly string _root = TestEnv.TempDir("applied");
    private readonly string _trust, _state;
    private readonly SigningKey _vendor = SigningKey.Generate(SignerRole.Vendor);
    private readonly SigningKey _learner = SigningKey.Generate(SignerRole.Learner);

    public AppliedUpdatesTests()
    {
        _trust = Path.Combine(_root, "trust");
        _state = Path.Combine(_root, "state");
        Directory.CreateDirectory(_trust);
        File.WriteAllText(Path.Combine(_trust, "vendor.pub"), _vendor.PublicKey.ToText());
    }

    public void Dispose()
    {
        _vendor.Dispose();
        _learner.Dispose();
        try { Directory.Delete(_root, recursive: true); } catch (IOException) { }
    }

    private DeviceTrust Trust => new(_trust, _learner.PublicKey);
    private string Models => ModelUpdates.ModelsDir(_state);

    private ModelUpdates Updates(ActiveModel active, AppliedUpdates? applied = null) =>
        new(new ModelAtStart(active, AppliedUpdates.State.None, null), _state, Trust, Managed, NullLogger<ModelUpdates>.Instance, applied: applied);

    private static (string Sha, byte[] Bytes) Sign(ModelPackage update, SigningKey key)
    {
        byte[] bytes = PackageSigner.Sign(PackageWriter.ToBytes(update), key);
        return (Convert.ToHexStringLower(SHA256.HashData(bytes)), bytes);
    }

    private ModelAtStart Start() => ModelUpdates.Start(new QanaOptions { Model = ShippedPath, StateDir = _state }, Trust, Managed);

    /// <summary>
    /// A start with the vendor's key missing, which cannot use the updates stored: it runs the configured model with the
    /// rollback floor <paramref name="floor"/> (checked here). The key is then put back, and the updates handler made
    /// over that start; the running model stays the configured one.
    /// </summary>
    private (ModelAtStart Start, ModelUpdates Updates) StartWithoutTheVendorKey(string floor)
    {
        string vendorKey = Path.Combine(_trust, "vendor.pub");
        string keyText = File.ReadAllText(vendorKey);
        File.Delete(vendorKey);
        ModelAtStart start = Start();
        try
        {
            Assert.NotNull(start.Problem);
            Assert.Equal(Shipped.Manifest.Version, start.Active.Provider.ModelVersion);
            Assert.Equal(floor, start.VersionFloor);
        }
        catch
        {
            start.Active.Dispose();
            throw;
        }
        File.WriteAllText(vendorKey, keyText);
        return (start, new ModelUpdates(start, _state, Trust, Managed, NullLogger<ModelUpdates>.Instance));
    }

    private string[] Stored() => [.. Directory.GetFiles(Models, "*.qana").Select(f => Path.GetFileNameWithoutExtension(f)).Order(StringComparer.Ordinal)];

    /// <summary>
    /// A vendor readout, then four readouts learned on top of it: each learned one supersedes the learned ones before
    /// it, so only the vendor's and the last learned package stay (the vendor's is what the learned ones are for), and
    /// a start restores the very model the whole chain gave. A package left over by a crash before the pruning is
    /// harmless at start and goes at the next change.
    /// </summary>
    [Fact]
    public void Learned_readouts_a_later_one_supersedes_are_pruned_and_the_last_is_restored_over_the_model_below()
    {
        using var active = new ActiveModel(ClassifierFactory.Create(Shipped, ShippedPath, Managed), "test");
        ModelUpdates updates = Updates(active);
        ModelPackage vendorReadout = ModelUpdateTests.Readout(Shipped, "1.0.1");
        var vendor = Sign(vendorReadout, _vendor);
        Assert.Equal(ModelUpdates.Applied, updates.Handle(vendor.Bytes, vendor.Sha).Outcome);

        ModelPackage model = ReadoutUpdates.Apply(Shipped, vendorReadout);
        var learned = new List<(string Sha, byte[] Bytes)>();
        for (int i = 1; i <= 3; i++)
        {
            ModelPackage readout = ModelUpdateTests.Readout(model, ModelUpdates.LearnedVersion(model.Manifest.Version));
            var signed = Sign(readout, _learner);
            var (outcome, reason) = updates.Handle(signed.Bytes, signed.Sha);
            Assert.True(outcome == ModelUpdates.Applied, reason);
            learned.Add(signed);
            model = ReadoutUpdates.Apply(model, readout);
            Assert.Equal(new[] { vendor.Sha, signed.Sha }.Order(StringComparer.Ordinal), Stored());
        }
        Assert.Equal("1.0.1.3", active.Provider.ModelVersion);
        Assert.Equal(new AppliedUpdates.State(null, [vendor.Sha, learned[^1].Sha]).Readouts, new AppliedUpdates(Models).Read().Readouts);

        // A start rebuilds the model the chain gave: the last learned readout over the vendor's.
        ModelAtStart start = Start();
        using (start.Active)
        {
            Assert.Null(start.Problem);
            ModelPackage restored = start.Active.Provider.Package;
            Assert.Equal("1.0.1.3", restored.Manifest.Version);
            Assert.Equal(ReadoutUpdates.Head(model).Weights, ReadoutUpdates.Head(restored).Weights);
            Assert.Equal(ReadoutUpdates.Head(model).Bias, ReadoutUpdates.Head(restored).Bias);
            Assert.Equal(model.Manifest.Provenance["base_version"], restored.Manifest.Provenance["base_version"]);
        }

        // A crash after active was written but before the pruning leaves a superseded package: nothing reads it, and
        // the next change removes it.
        File.WriteAllBytes(Path.Combine(Models, learned[0].Sha + ".qana"), learned[0].Bytes);
        ModelAtStart again = Start();
        using (again.Active) Assert.Null(again.Problem);
        ModelPackage fourth = ModelUpdateTests.Readout(model, ModelUpdates.LearnedVersion(model.Manifest.Version));
        var last = Sign(fourth, _learner);
        Assert.Equal(ModelUpdates.Applied, updates.Handle(last.Bytes, last.Sha).Outcome);
        Assert.Equal(new[] { vendor.Sha, last.Sha }.Order(StringComparer.Ordinal), Stored());
    }

    /// <summary>
    /// A kill while a package was being written leaves its temporary file (<c>{sha}.qana.tmp</c>; the rename never
    /// came). Nothing reads it and no later write has its name, so it used to stay for good: the next change removes it
    /// with the packages <c>active</c> no longer names.
    /// </summary>
    [Fact]
    public void A_temporary_file_left_by_a_kill_during_a_write_goes_at_the_next_change()
    {
        using var active = new ActiveModel(ClassifierFactory.Create(Shipped, ShippedPath, Managed), "test");
        ModelUpdates updates = Updates(active);
        var interrupted = Sign(ModelUpdateTests.Readout(Shipped, "1.0.1"), _vendor);
        Directory.CreateDirectory(Models);
        string leftover = Path.Combine(Models, interrupted.Sha + ".qana.tmp");
        File.WriteAllBytes(leftover, interrupted.Bytes.AsSpan(0, interrupted.Bytes.Length / 2).ToArray());
        ModelAtStart start = Start();
        using (start.Active) Assert.Null(start.Problem);

        var next = Sign(ModelUpdateTests.Readout(Shipped, "1.0.2"), _vendor);
        var (outcome, reason) = updates.Handle(next.Bytes, next.Sha);
        Assert.True(outcome == ModelUpdates.Applied, reason);
        Assert.False(File.Exists(leftover), "the interrupted write's temporary file is still there");
        Assert.Equal([next.Sha], Stored());
        Assert.Empty(Directory.GetFiles(Models, "*.tmp"));
    }

    /// <summary>
    /// Signed readout updates the integer engine could not prepare: a bias so large that the head's int32 accumulator
    /// could overflow, and a weight scale whose requantization multiplier is too large to represent. The package check
    /// refuses each with the reason, before any engine is made; the running model stays and nothing is stored. The
    /// engine's exception once escaped the update handler (no outcome, no entry in the update log, the message left
    /// unacknowledged to come back at every session); later the package validation accepted them and only the engine
    /// refused them. Neither the writer nor the signer makes such a package now, so the bytes are edited and signed here.
    /// </summary>
    [Fact]
    public void A_signed_update_the_engine_could_not_prepare_is_refused_at_its_check_and_the_model_stays()
    {
        using var active = new ActiveModel(ClassifierFactory.Create(Shipped, ShippedPath, Managed), "test");
        ModelUpdates updates = Updates(active);
        Node head = ReadoutUpdates.Head(Shipped);
        ModelPackage plain = ReadoutUpdates.Create(Shipped, "1.0.1", head.Weights!, head.WeightScales!, head.Bias!);
        GoldenVector[] golden = GoldenVectors.Record(plain, [TestGraphs.RandomInput(plain, 1)]);
        byte[] valid = PackageWriter.ToBytes(ReadoutUpdates.Create(Shipped, "1.0.1", head.Weights!, head.WeightScales!, head.Bias!, golden: golden));
        var edits = new (Action<System.Text.Json.Nodes.JsonObject, byte[]> Edit, string Why)[]
        {
            ((dense, blob) => BinaryPrimitives.WriteInt32LittleEndian(blob.AsSpan((int)dense["bias"]!["offset"]!), int.MaxValue), "could overflow"),
            ((dense, _) => dense["weightScales"] = new System.Text.Json.Nodes.JsonArray([.. head.WeightScales!.Select(_ => (System.Text.Json.Nodes.JsonNode?)1e20)]), "too large"),
        };
        foreach (var (edit, why) in edits)
        {
            byte[] bytes = PackageSigner.SignUnchecked(EditHead(valid, edit), _vendor);
            string sha = Convert.ToHexStringLower(SHA256.HashData(bytes));

            var (outcome, reason) = updates.Handle(bytes, sha);
            Assert.True(outcome == ModelUpdates.Refused, $"{outcome}: {reason}");
            Assert.Contains(why, reason, StringComparison.Ordinal);
            Assert.DoesNotContain('\n', reason);
            Assert.Equal(Shipped.Manifest.Version, active.Provider.ModelVersion);
            Assert.False(File.Exists(Path.Combine(Models, sha + ".qana")));
        }
        Assert.True(new AppliedUpdates(Models).Read().IsEmpty);
    }

    /// <summary>A package with its dense node's JSON and the blob edited, lengths and checksum made right again.</summary>
    private static byte[] EditHead(byte[] package, Action<System.Text.Json.Nodes.JsonObject, byte[]> edit)
    {
        int jsonLength = (int)BinaryPrimitives.ReadUInt32LittleEndian(package.AsSpan(16));
        int blobLength = (int)BinaryPrimitives.ReadUInt32LittleEndian(package.AsSpan(20));
        var root = System.Text.Json.Nodes.JsonNode.Parse(package.AsSpan(24, jsonLength))!.AsObject();
        byte[] blob = package.AsSpan(24 + jsonLength, blobLength).ToArray();
        edit(root["graph"]!["nodes"]!.AsArray().Select(n => n!.AsObject()).Single(n => (string?)n["op"] == "dense"), blob);
        byte[] json = System.Text.Encoding.UTF8.GetBytes(root.ToJsonString());
        var bytes = new byte[24 + json.Length + blob.Length + 32];
        package.AsSpan(0, 16).CopyTo(bytes);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(16), (uint)json.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(20), (uint)blob.Length);
        json.CopyTo(bytes, 24);
        blob.CopyTo(bytes, 24 + json.Length);
        SHA256.HashData(bytes.AsSpan(0, bytes.Length - 32), bytes.AsSpan(bytes.Length - 32));
        return bytes;
    }

    /// <summary>
    /// A learner key is one device's, and a readout learned there keeps the model's referral threshold, fallback τ and
    /// saliency flatness threshold. A learner-signed readout that changes one (here a referral threshold of 1, which no
    /// image reaches: referrals switched off) is refused and the model stays; the same readout signed by the vendor, who
    /// fits those settings, is applied. One that reached the state folder before this check is refused at start, which
    /// then runs the configured model and says why.
    /// </summary>
    [Fact]
    public void A_learned_readout_that_changes_the_clinical_settings_is_refused_and_one_the_vendor_signs_is_applied()
    {
        using var active = new ActiveModel(ClassifierFactory.Create(Shipped, ShippedPath, Managed), "test");
        ModelUpdates updates = Updates(active);
        Calibration was = Shipped.Manifest.Calibration;
        var noReferrals = new Calibration
        {
            ReadoutWindow = was.ReadoutWindow, Thresholds = was.Thresholds, Beta = was.Beta, StepWeights = was.StepWeights,
            TilingTau = was.TilingTau, ReferralThreshold = 1.0, SaliencyFlatCv = was.SaliencyFlatCv,
        };
        Node head = ReadoutUpdates.Head(Shipped);
        string version = ModelUpdates.LearnedVersion(Shipped.Manifest.Version);
        ModelPackage plain = ReadoutUpdates.Create(Shipped, version, head.Weights!, head.WeightScales!, head.Bias!, calibration: noReferrals);
        GoldenVector[] golden = GoldenVectors.Record(plain, Enumerable.Range(1, 4).Select(seed => TestGraphs.RandomInput(plain, seed)));
        ModelPackage readout = ReadoutUpdates.Create(Shipped, version, head.Weights!, head.WeightScales!, head.Bias!, calibration: noReferrals, golden: golden);

        var learned = Sign(readout, _learner);
        var (outcome, reason) = updates.Handle(learned.Bytes, learned.Sha);
        Assert.True(outcome == ModelUpdates.Refused, $"{outcome}: {reason}");
        Assert.Contains("may not change the clinical settings", reason, StringComparison.Ordinal);
        Assert.Contains(string.Create(System.Globalization.CultureInfo.InvariantCulture, $"referral threshold {was.ReferralThreshold:R} -> 1"), reason, StringComparison.Ordinal);
        Assert.Equal(Shipped.Manifest.Version, active.Provider.ModelVersion);
        Assert.Equal(was.ReferralThreshold, active.Provider.Package.Manifest.Calibration.ReferralThreshold);
        Assert.True(new AppliedUpdates(Models).Read().IsEmpty);

        // Stored before the check existed: the start refuses it and runs the configured model.
        new AppliedUpdates(Models).Commit(new AppliedUpdates.State(null, [learned.Sha]), learned.Sha, learned.Bytes);
        ModelAtStart start = Start();
        using (start.Active)
        {
            Assert.NotNull(start.Problem);
            Assert.Contains("changes the clinical settings", start.Problem, StringComparison.Ordinal);
            Assert.Equal(Shipped.Manifest.Version, start.Active.Provider.ModelVersion);
        }

        var vendor = Sign(readout, _vendor);
        (outcome, reason) = updates.Handle(vendor.Bytes, vendor.Sha);
        Assert.True(outcome == ModelUpdates.Applied, reason);
        Assert.Equal(1.0, active.Provider.Package.Manifest.Calibration.ReferralThreshold);
    }

    /// <summary>
    /// Another device's learner key, trusted here, signs a readout at the end of the learned line (its counter
    /// <see cref="long.MaxValue"/>), or the vendor one just below it. Applied, the first left this device's learning no
    /// version above it: the next learned version overflowed to <c>1.0.0.-9223372036854775808</c>, which the
    /// learned-line check refused, until the vendor's next release; the second was applied, and the readout learned over
    /// it, at the largest counter, was refused in its turn after a whole round of training, at every round. Both are
    /// refused, the model stays, and this device's own learned readout is applied; one stored before the check is
    /// refused at start, which runs the configured model and says why.
    /// </summary>
    [Theory]
    [InlineData("1.0.0.9223372036854775807", false)]
    [InlineData("1.0.0.9223372036854775806", true)]
    public void A_readout_at_the_end_of_the_learned_line_is_refused_and_learning_goes_on(string version, bool vendorSigned)
    {
        using var other = SigningKey.Generate(SignerRole.Learner);
        File.WriteAllText(Path.Combine(_trust, "other-device.pub"), other.PublicKey.ToText());
        using var active = new ActiveModel(ClassifierFactory.Create(Shipped, ShippedPath, Managed), "test");
        ModelUpdates updates = Updates(active);

        var last = Sign(ModelUpdateTests.Readout(Shipped, version), vendorSigned ? _vendor : other);
        var (outcome, reason) = updates.Handle(last.Bytes, last.Sha);
        Assert.True(outcome == ModelUpdates.Refused, $"{outcome}: {reason}");
        Assert.Contains("leaves no learned version above it", reason, StringComparison.Ordinal);
        Assert.Equal(Shipped.Manifest.Version, active.Provider.ModelVersion);
        Assert.True(new AppliedUpdates(Models).Read().IsEmpty);

        var learned = Sign(ModelUpdateTests.Readout(Shipped, ModelUpdates.LearnedVersion(Shipped.Manifest.Version)), _learner);
        (outcome, reason) = updates.Handle(learned.Bytes, learned.Sha);
        Assert.True(outcome == ModelUpdates.Applied, $"{outcome}: {reason}");
        Assert.Equal("1.0.0.1", active.Provider.ModelVersion);

        // Stored before the check existed: the start refuses it and runs the configured model. Refused for good, it sets
        // no rollback floor (as the highest stored version it refused everything below it, this device's learned
        // readouts included), so learning goes on over the configured model.
        new AppliedUpdates(Models).Commit(new AppliedUpdates.State(null, [last.Sha]), last.Sha, last.Bytes);
        ModelAtStart start = Start();
        using (start.Active)
        {
            Assert.NotNull(start.Problem);
            Assert.Contains("leaves no learned version above it", start.Problem, StringComparison.Ordinal);
            Assert.Equal(Shipped.Manifest.Version, start.Active.Provider.ModelVersion);
            Assert.Null(start.VersionFloor);
            var afterStart = new ModelUpdates(start, _state, Trust, Managed, NullLogger<ModelUpdates>.Instance);
            (outcome, reason) = afterStart.Handle(learned.Bytes, learned.Sha);
            Assert.True(outcome == ModelUpdates.Applied, $"{outcome}: {reason}");
            Assert.Equal("1.0.0.1", start.Active.Provider.ModelVersion);
        }
    }

    /// <summary>
    /// A start that cannot use the applied updates (here the vendor's key is missing from the trust folder) runs the
    /// configured model, and the updates stay under the state folder for a start that can. Meanwhile an older
    /// vendor-signed update, newer only than the configured model, is refused as a rollback: it used to be applied and
    /// to prune the newer one. The stored update itself, sent again, is applied and lifts the floor.
    /// </summary>
    [Fact]
    public void After_a_start_that_could_not_use_the_applied_updates_an_older_update_is_refused_as_a_rollback()
    {
        using (var active = new ActiveModel(ClassifierFactory.Create(Shipped, ShippedPath, Managed), "test"))
        {
            ModelUpdates first = Updates(active);
            var newer = Sign(ModelUpdateTests.Readout(Shipped, "1.0.2"), _vendor);
            Assert.Equal(ModelUpdates.Applied, first.Handle(newer.Bytes, newer.Sha).Outcome);
        }
        var older = Sign(ModelUpdateTests.Readout(Shipped, "1.0.1"), _vendor);
        var stored = Sign(ModelUpdateTests.Readout(Shipped, "1.0.2"), _vendor);
        var (start, updates) = StartWithoutTheVendorKey(floor: "1.0.2");
        using (start.Active)
        {

            var (outcome, reason) = updates.Handle(older.Bytes, older.Sha);
            Assert.True(outcome == ModelUpdates.Refused, $"{outcome}: {reason}");
            Assert.Contains("older than 1.0.2", reason, StringComparison.Ordinal);
            Assert.Equal(Shipped.Manifest.Version, start.Active.Provider.ModelVersion);
            Assert.Single(Stored());

            // The update the start could not use, sent again (a vendor's package of the same version), is applied.
            (outcome, reason) = updates.Handle(stored.Bytes, stored.Sha);
            Assert.True(outcome == ModelUpdates.Applied, reason);
            Assert.Equal("1.0.2", start.Active.Provider.ModelVersion);
        }
    }

    /// <summary>
    /// A vendor readout and a readout learned over it are stored; a start that cannot use them (the vendor's key is
    /// missing) runs the configured model. The rollback floor is the vendor's version, not the learned one above it:
    /// the floor was 1.0.1.1, the device's own version, which no vendor sends, so the vendor's 1.0.1 sent again was
    /// refused as a rollback, and the floor stayed until a restart. Now it is applied, and an older one is still refused.
    /// </summary>
    [Fact]
    public void A_learned_readout_does_not_raise_the_rollback_floor_above_the_vendor_update_it_was_learned_over()
    {
        var vendorReadout = ModelUpdateTests.Readout(Shipped, "1.0.1");
        var vendor = Sign(vendorReadout, _vendor);
        using (var active = new ActiveModel(ClassifierFactory.Create(Shipped, ShippedPath, Managed), "test"))
        {
            ModelUpdates first = Updates(active);
            Assert.Equal(ModelUpdates.Applied, first.Handle(vendor.Bytes, vendor.Sha).Outcome);
            var learned = Sign(ModelUpdateTests.Readout(ReadoutUpdates.Apply(Shipped, vendorReadout), "1.0.1.1"), _learner);
            var (applied, why) = first.Handle(learned.Bytes, learned.Sha);
            Assert.True(applied == ModelUpdates.Applied, $"{applied}: {why}");
        }
        var (start, updates) = StartWithoutTheVendorKey(floor: "1.0.1");
        using (start.Active)
        {

            var older = Sign(ModelUpdateTests.Readout(Shipped, "1.0.0.5"), _vendor);
            var (outcome, reason) = updates.Handle(older.Bytes, older.Sha);
            Assert.True(outcome == ModelUpdates.Refused, $"{outcome}: {reason}");
            Assert.Contains("older than 1.0.1", reason, StringComparison.Ordinal);

            (outcome, reason) = updates.Handle(vendor.Bytes, vendor.Sha);
            Assert.True(outcome == ModelUpdates.Applied, $"{outcome}: {reason}");
            Assert.Equal("1.0.1", start.Active.Provider.ModelVersion);
        }
    }

    /// <summary>
    /// A device running the vendor's 1.0.0-alpha learns and applies 1.0.0-alpha.learned.1; the vendor's next
    /// pre-release, 1.0.0-alpha.1 (semver's own next one), is then applied over it. By semver §11 alone the number 1
    /// ranks below the text <c>learned</c>, and the release was refused as a downgrade of the learned version.
    /// </summary>
    [Fact]
    public void The_vendors_next_pre_release_is_applied_over_a_readout_learned_on_the_pre_release()
    {
        System.Text.Json.Nodes.JsonNode manifest = System.Text.Json.JsonSerializer.SerializeToNode(Shipped.Manifest)!;
        manifest["Version"] = "1.0.0-alpha";
        var alpha = new ModelPackage { Manifest = System.Text.Json.JsonSerializer.Deserialize<ModelManifest>(manifest)!, Graph = Shipped.Graph };
        manifest["Version"] = "1.0.0-alpha.1";
        var next = new ModelPackage { Manifest = System.Text.Json.JsonSerializer.Deserialize<ModelManifest>(manifest)!, Graph = Shipped.Graph };
        using var active = new ActiveModel(ClassifierFactory.Create(alpha, ShippedPath, Managed), "test");
        ModelUpdates updates = Updates(active);

        var learned = Sign(ModelUpdateTests.Readout(alpha, ModelUpdates.LearnedVersion(alpha.Manifest.Version)), _learner);
        var (outcome, reason) = updates.Handle(learned.Bytes, learned.Sha);
        Assert.True(outcome == ModelUpdates.Applied, $"{outcome}: {reason}");
        Assert.Equal("1.0.0-alpha.learned.1", active.Provider.ModelVersion);

        var release = Sign(next, _vendor);
        (outcome, reason) = updates.Handle(release.Bytes, release.Sha);
        Assert.True(outcome == ModelUpdates.Applied, $"{outcome}: {reason}");
        Assert.Equal("1.0.0-alpha.1", active.Provider.ModelVersion);
    }

    /// <summary>
    /// A damaged <c>active</c> file (a disk error, an edit by hand) stops the start from using the applied updates, as
    /// a missing key does; the packages it named are still in the folder, so they still set the rollback floor, and an
    /// older vendor-signed update is refused. Before, no floor was set, and the older update was applied and pruned the
    /// newer one.
    /// </summary>
    [Fact]
    public void A_damaged_active_file_still_sets_the_rollback_floor_from_the_stored_packages()
    {
        using (var active = new ActiveModel(ClassifierFactory.Create(Shipped, ShippedPath, Managed), "test"))
        {
            var newer = Sign(ModelUpdateTests.Readout(Shipped, "1.0.2"), _vendor);
            Assert.Equal(ModelUpdates.Applied, Updates(active).Handle(newer.Bytes, newer.Sha).Outcome);
        }
        File.WriteAllText(Path.Combine(Models, "active"), "qana-applied-updates v1\nreadout 9b41\n");

        ModelAtStart start = Start();
        using (start.Active)
        {
            Assert.Contains("bad line 'readout 9b41'", start.Problem);
            Assert.Equal(Shipped.Manifest.Version, start.Active.Provider.ModelVersion);
            Assert.Equal("1.0.2", start.VersionFloor);
            var updates = new ModelUpdates(start, _state, Trust, Managed, NullLogger<ModelUpdates>.Instance);
            var older = Sign(ModelUpdateTests.Readout(Shipped, "1.0.1"), _vendor);
            var (outcome, reason) = updates.Handle(older.Bytes, older.Sha);
            Assert.True(outcome == ModelUpdates.Refused, $"{outcome}: {reason}");
            Assert.Contains("older than 1.0.2", reason, StringComparison.Ordinal);
            Assert.Single(Stored());
        }
    }

    /// <summary>
    /// The first update creates <c>models/</c> under the state folder. Its files were flushed and so was the new folder,
    /// but not the state folder that holds the new folder's entry: a power cut could lose <c>models/</c> with the applied
    /// update in it. The state folder is now flushed after the folder is made and before anything is written into it;
    /// later changes, with the folder in place, flush only <c>models/</c>. The store's folder-flush hook stands in for
    /// the flush and records which folders it was asked to flush, in order, over a real state folder.
    /// </summary>
    [Fact]
    public void The_first_update_flushes_the_state_folder_that_holds_the_new_models_folder()
    {
        using var active = new ActiveModel(ClassifierFactory.Create(Shipped, ShippedPath, Managed), "test");
        var flushed = new List<string>();
        var applied = new AppliedUpdates(Models, folder => flushed.Add(Path.GetFullPath(folder).TrimEnd('/')));
        ModelUpdates updates = Updates(active, applied);
        Directory.CreateDirectory(_state);
        Assert.False(Directory.Exists(Models));

        var first = Sign(ModelUpdateTests.Readout(Shipped, "1.0.1"), _vendor);
        var (outcome, reason) = updates.Handle(first.Bytes, first.Sha);
        Assert.True(outcome == ModelUpdates.Applied, $"{outcome}: {reason}");
        string state = Path.GetFullPath(_state).TrimEnd('/'), models = Path.GetFullPath(Models).TrimEnd('/');
        Assert.Equal(new[] { state, models, models }, flushed);

        flushed.Clear();
        var second = Sign(ModelUpdateTests.Readout(ReadoutUpdates.Apply(Shipped, ModelUpdateTests.Readout(Shipped, "1.0.1")), "1.0.2"), _vendor);
        (outcome, reason) = updates.Handle(second.Bytes, second.Sha);
        Assert.True(outcome == ModelUpdates.Applied, $"{outcome}: {reason}");
        Assert.Equal(new[] { models, models }, flushed);
    }

    /// <summary>
    /// The state folder's flush after the first update created <c>models/</c> fails (EIO): the update is not stored.
    /// Sent again, it is applied, and the state folder is flushed again first: the folder was in place by then, and the
    /// retry skipped that flush and reported the update applied and durable although the folder's entry might never
    /// reach the disk.
    /// </summary>
    [Fact]
    public void A_failed_flush_of_the_state_folder_is_made_again_before_the_update_sent_again_is_applied()
    {
        using var active = new ActiveModel(ClassifierFactory.Create(Shipped, ShippedPath, Managed), "test");
        string state = Path.GetFullPath(_state).TrimEnd('/'), models = Path.GetFullPath(Models).TrimEnd('/');
        var flushed = new List<string>();
        bool failState = true;
        var applied = new AppliedUpdates(Models, folder =>
        {
            string full = Path.GetFullPath(folder).TrimEnd('/');
            flushed.Add(full);
            if (full == state && failState) throw new IOException($"fsync of {folder} failed: errno 5");
        });
        ModelUpdates updates = Updates(active, applied);
        Directory.CreateDirectory(_state);

        var update = Sign(ModelUpdateTests.Readout(Shipped, "1.0.1"), _vendor);
        var (outcome, reason) = updates.Handle(update.Bytes, update.Sha);
        Assert.True(outcome == ModelUpdates.NotStored, $"{outcome}: {reason}");
        Assert.Equal(Shipped.Manifest.Version, active.Provider.ModelVersion);

        failState = false;
        flushed.Clear();
        (outcome, reason) = updates.Handle(update.Bytes, update.Sha);
        Assert.True(outcome == ModelUpdates.Applied, $"{outcome}: {reason}");
        Assert.DoesNotContain("not durable", reason, StringComparison.Ordinal);
        Assert.Equal(new[] { state, models, models }, flushed);
    }

    /// <summary>
    /// The folder flush after the rename of <c>active</c> fails: the update is in effect (the workers run it, and the
    /// next start reads it), so it is applied, with the durability warning in its reason and in the model's source
    /// (the status); it used to be reported not-stored although a restart would run it. A flush that fails before,
    /// after the package alone, still means not stored.
    /// </summary>
    [Fact]
    public void A_failed_folder_flush_after_active_was_renamed_applies_the_update_with_a_durability_warning()
    {
        using var active = new ActiveModel(ClassifierFactory.Create(Shipped, ShippedPath, Managed), "test");
        int flushes = 0;
        int failAt = 2;   // of models/: 1: the package's folder flush, 2: the one after active was renamed
        var applied = new AppliedUpdates(Models, folder =>
        {
            // The state folder's flush, when the first update creates models/, is not counted.
            if (Path.GetFullPath(folder) == Path.GetFullPath(Models) && ++flushes == failAt) throw new IOException($"fsync of {folder} failed: errno 5");
        });
        ModelUpdates updates = Updates(active, applied);

        var first = Sign(ModelUpdateTests.Readout(Shipped, "1.0.1"), _vendor);
        var (outcome, reason) = updates.Handle(first.Bytes, first.Sha);
        Assert.True(outcome == ModelUpdates.Applied, $"{outcome}: {reason}");
        Assert.Contains("not durable yet", reason, StringComparison.Ordinal);
        Assert.Contains("errno 5", reason, StringComparison.Ordinal);
        Assert.Equal("1.0.1", active.Provider.ModelVersion);
        Assert.Contains("not durable yet", active.Source, StringComparison.Ordinal);
        ModelAtStart start = Start();
        using (start.Active)
        {
            Assert.Null(start.Problem);
            Assert.Equal("1.0.1", start.Active.Provider.ModelVersion);
        }

        // Failing after the package but before active: not stored, the running model and the state stay.
        flushes = 0;
        failAt = 1;
        var second = Sign(ModelUpdateTests.Readout(ReadoutUpdates.Apply(Shipped, ModelUpdateTests.Readout(Shipped, "1.0.1")), "1.0.2"), _vendor);
        Assert.Equal(ModelUpdates.NotStored, updates.Handle(second.Bytes, second.Sha).Outcome);
        Assert.Equal("1.0.1", active.Provider.ModelVersion);
        Assert.Equal([first.Sha], new AppliedUpdates(Models).Read().Readouts);
    }
}
