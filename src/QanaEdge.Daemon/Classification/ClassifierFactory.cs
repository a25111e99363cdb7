using QanaEdge.Model.Packaging;

namespace QanaEdge.Daemon.Classification;

/// <summary>Turns a package and an engine choice into classifiers.</summary>
public static class ClassifierFactory
{
    public static IClassifierProvider Create(ModelPackage package, string path, EngineChoice choice)
    {
        // Until Imaging's LesionClassifier is in this build there is nothing to classify with: say so at start.
        throw new ModelUnavailableException($"model {package.Manifest.ModelId} ({path}) loaded, but this build has no image classifier yet ({choice.Reason})");
    }
}
