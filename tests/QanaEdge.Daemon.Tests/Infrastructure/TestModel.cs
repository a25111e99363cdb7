using QanaEdge.Model.Packaging;
using QanaEdge.TestSupport;

namespace QanaEdge.Daemon.Tests.Infrastructure;

/// <summary>
/// A QANA-shaped integer package built in code (TestGraphs) and written to a real .qana file once per test run: the
/// daemon loads it through PackageReader like the shipped model.
/// </summary>
public static class TestModel
{
    private static readonly Lazy<string> File_ = new(() =>
    {
        string dir = TestEnv.TempDir("model");
        string path = Path.Combine(dir, "qana-shaped-7.qana");
        ModelPackage p = TestGraphs.QanaShaped(7);
        ModelManifest m = p.Manifest;
        Calibration c = m.Calibration;
        // Random weights leave most images under the tiling threshold, which would make every image cost five extra
        // network runs; the daemon tests are about the daemon (Imaging's tests cover tiling), so τ = 0 here.
        var manifest = new ModelManifest
        {
            ModelId = m.ModelId, Version = m.Version, CreatedUtc = m.CreatedUtc, Classes = m.Classes, Input = m.Input,
            Profile = m.Profile, Layers = m.Layers, ConversionSuccessRate = m.ConversionSuccessRate, Metrics = m.Metrics,
            Golden = m.Golden, Provenance = m.Provenance,
            Calibration = new Calibration
            {
                ReadoutWindow = c.ReadoutWindow, Thresholds = c.Thresholds, Beta = c.Beta, StepWeights = c.StepWeights,
                TilingTau = 0, ReferralThreshold = c.ReferralThreshold, SaliencyFlatCv = c.SaliencyFlatCv,
            },
        };
        PackageWriter.Save(new ModelPackage { Manifest = manifest, Graph = p.Graph }, path);
        return path;
    });

    public static string Path_ => File_.Value;
    public const string Id = "qana-shaped-7";
}
