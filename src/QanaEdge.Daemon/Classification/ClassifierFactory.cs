using QanaEdge.Model.Packaging;
using QanaEdge.Imaging;
using QanaEdge.Runtime;

namespace QanaEdge.Daemon.Classification;

/// <summary>Turns a package and an engine choice into classifiers, one per worker.</summary>
public static class ClassifierFactory
{
    public static IClassifierProvider Create(ModelPackage package, string path, EngineChoice choice)
    {
        string reason = choice.Reason;
        if (choice.UseAkida)
        {
            // The Akida engine binding is not part of this build: run managed, and say so as loudly as the choice itself.
            reason = $"{choice.Reason}, but this build has no Akida engine binding: managed integer engine";
        }
        // Build one engine up front so a package the engine cannot run fails at start, before READY=1.
        try { new LesionImageClassifier(package, LesionClassifier.CreateEngine(package)).Dispose(); }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or NotSupportedException or PackageFormatException)
        {
            throw new ModelUnavailableException($"model {package.Manifest.ModelId} ({path}) cannot run on the managed engine: {e.Message}", e);
        }
        return new PackageClassifierProvider(package, path, $"managed IntegerEngine ({KernelMode.Optimized})", reason,
            p => new LesionImageClassifier(p, LesionClassifier.CreateEngine(p)));
    }
}
