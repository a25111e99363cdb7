using QanaEdge.Imaging;
using QanaEdge.Model.Packaging;
using QanaEdge.Runtime;

namespace QanaEdge.Daemon.Classification;

/// <summary>
/// A loaded model package plus the engine choice; each worker gets its own classifier (engines are not thread-safe).
/// <paramref name="owned"/> (e.g. the Akida device the workers' engines share) is released with the provider.
/// </summary>
public sealed class PackageClassifierProvider(ModelPackage package, string packagePath, string engineName, string engineReason,
    Func<ModelPackage, IInferenceEngine> createEngine, IDisposable? owned = null, ClassifierOptions? options = null) : IClassifierProvider
{
    private IDisposable? _owned = owned;

    public ModelPackage Package => package;
    public string PackagePath => packagePath;
    public string ModelId => package.Manifest.ModelId;
    public string ModelVersion => package.Manifest.Version;
    public string EngineName => engineName;
    public string EngineReason => engineReason;
    public bool HoldsDevice { get; } = owned is not null;
    public string? Backbone { get; } = BackboneOf(package);
    public IImageClassifier CreateClassifier() => new LesionImageClassifier(package, createEngine(package), Backbone, options);

    private static string? BackboneOf(ModelPackage package)
    {
        try { return ReadoutUpdates.BackboneDigest(package); }
        catch (PackageFormatException) { return null; }   // no dense head: nothing a readout learner could change
    }

    public string? SelfTest(GoldenVector[]? vectors = null)
    {
        using IInferenceEngine engine = createEngine(package);
        return GoldenVectors.Check(vectors ?? package.Manifest.Golden, engine);
    }

    /// <summary>Idempotent: a model swap may release the card early, before the swap disposes the provider.</summary>
    public void Dispose() => Interlocked.Exchange(ref _owned, null)?.Dispose();

    /// <summary>Locates (Qana:Model or firmware-models/ via DefaultModel.Locate) and loads the package.</summary>
    public static (ModelPackage Package, string Path) LoadPackage(string? explicitPath)
    {
        string path;
        try { path = DefaultModel.Locate(explicitPath); }
        catch (FileNotFoundException e) { throw new ModelUnavailableException(e.Message, e); }
        catch (PackageFormatException e) { throw new ModelUnavailableException(e.Message, e); }
        try { return (PackageReader.Load(path), path); }
        catch (PackageFormatException e) { throw new ModelUnavailableException($"model package {path}: {e.Message}", e); }
        catch (IOException e) { throw new ModelUnavailableException($"model package {path}: {e.Message}", e); }
    }
}
