using System.Text.Json;
using QanaEdge.Daemon.Classification;
using QanaEdge.Daemon.Messaging;
using QanaEdge.Imaging;
using QanaEdge.Model.Packaging;
using QanaEdge.TestSupport;

namespace QanaEdge.Daemon.Tests;

/// <summary>The result message names each probability by the class it belongs to, as <c>qana classify --json</c> does.</summary>
public sealed class ResultPayloadTests
{
    /// <summary>
    /// The package format does not fix the class order: the shipped network with its class names listed in another order
    /// (the same logits, named otherwise) is a valid package. The message keyed the probabilities by the canonical order
    /// (akiec, bcc, ...) whatever the package said, so its probabilities disagreed with its own label and with the CLI's.
    /// </summary>
    [Fact]
    public void Probabilities_are_keyed_by_the_packages_class_names()
    {
        ModelPackage shipped = PackageReader.Load(File.ReadAllBytes(Path.Combine(TestData.RepositoryRoot, "firmware-models", "qana-paper8-64.qana")));
        ModelManifest m = shipped.Manifest;
        string[] reordered = [.. m.Classes.Reverse()];
        var package = new ModelPackage
        {
            Graph = shipped.Graph,
            Manifest = new ModelManifest
            {
                ModelId = m.ModelId, Version = m.Version, CreatedUtc = m.CreatedUtc, Classes = reordered, Input = m.Input,
                Profile = m.Profile, Layers = m.Layers, ConversionSuccessRate = m.ConversionSuccessRate, Metrics = m.Metrics,
                Calibration = m.Calibration, Golden = m.Golden, Provenance = m.Provenance,
            },
        };
        PackageValidator.Validate(package);
        using var classifier = new LesionImageClassifier(package, LesionClassifier.CreateEngine(package));
        foreach (string file in Directory.GetFiles(TestData.Ham10000Images, "*.jpg").Order(StringComparer.Ordinal).Take(3))
        {
            Classification.Classification c = classifier.Classify(File.ReadAllBytes(file));
            byte[] payload = Payloads.Result("id", "sha", c, m.ModelId, m.Version, null, DateTime.UtcNow);
            using JsonDocument doc = JsonDocument.Parse(payload);
            JsonElement probabilities = doc.RootElement.GetProperty("probabilities");
            for (int k = 0; k < reordered.Length; k++)
                Assert.Equal(Math.Round(c.Probabilities[k], 6), probabilities.GetProperty(reordered[k]).GetDouble());
            // The label names the highest probability of the message.
            string label = doc.RootElement.GetProperty("label").GetString()!;
            double top = probabilities.EnumerateObject().Max(p => p.Value.GetDouble());
            Assert.Equal(top, probabilities.GetProperty(label).GetDouble());
        }
    }
}
