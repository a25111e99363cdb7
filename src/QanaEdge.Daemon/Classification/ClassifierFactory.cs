using System.Diagnostics.CodeAnalysis;
using QanaEdge.Akida;
using QanaEdge.Imaging;
using QanaEdge.Model;
using QanaEdge.Model.Packaging;
using QanaEdge.Runtime;

namespace QanaEdge.Daemon.Classification;

/// <summary>Turns a package and an engine choice into classifiers, one per worker.</summary>
public static class ClassifierFactory
{
    /// <summary>
    /// With Akida chosen and a package of the akd1000 profile, the card is opened and programmed once, here, and the
    /// workers' engines share it. Any other case runs the managed engine, and the reason says why as loudly as the
    /// choice itself: a model of another profile, or the device's own message when it would not open or program.
    /// </summary>
    public static IClassifierProvider Create(ModelPackage package, string path, EngineChoice choice)
    {
        string reason = choice.Reason;
        if (choice.UseAkida)
        {
            QuantizationProfile profile = package.Manifest.Profile;
            if (profile != QuantizationProfile.Akd1000)
                reason = $"{choice.Reason}, but model profile {ProfileName(profile)} cannot run on AKD1000 (the card runs akd1000 packages: "
                    + "8-bit input layer, then at most 4-bit weights and activations): managed integer engine";
            else if (TryAkida(package, path, choice, out IClassifierProvider? provider, out string refusal))
                return provider!;
            else
                reason = $"{choice.Reason}, but {refusal}: managed integer engine";
        }
        // Build one engine up front so a package the engine cannot run fails at start, before READY=1.
        try { new LesionImageClassifier(package, LesionClassifier.CreateEngine(package), options: choice.Classifier).Dispose(); }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or NotSupportedException or PackageFormatException)
        {
            throw new ModelUnavailableException($"model {package.Manifest.ModelId} ({path}) cannot run on the managed engine: {e.Message}", e);
        }
        return new PackageClassifierProvider(package, path, $"managed IntegerEngine ({KernelMode.Optimized})", reason,
            p => LesionClassifier.CreateEngine(p), options: choice.Classifier);
    }

    /// <summary>The engine choice while the card is out of use after a fault: managed, with the card's message as the reason.</summary>
    public static EngineChoice AfterCardFault(EngineChoice choice, string why)
        => choice with { UseAkida = false, Reason = $"the Akida card failed ({why}): managed integer engine" };

    /// <summary>
    /// <see cref="Create"/>, then one classifier built and the package's golden vectors reproduced on the engine it
    /// got: a provider ready to swap in, or false with why not. Any failure of the build or the self-test counts, a
    /// card fault (AkidaException) included. <paramref name="vectors"/>, when given, are checked instead of the package's.
    /// </summary>
    public static bool TryCreateChecked(ModelPackage package, string path, EngineChoice choice, out IClassifierProvider? provider, out string failure,
        GoldenVector[]? vectors = null)
    {
        string name = $"{package.Manifest.ModelId} {package.Manifest.Version}";
        provider = null;
        try
        {
            provider = Create(package, path, choice);
            provider.CreateClassifier().Dispose();
            if (provider.SelfTest(vectors) is not { } failed) { failure = ""; return true; }
            failure = $"{name}: {failed} ({provider.EngineName})";
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            failure = $"{name} cannot run here: {e.Message}";
        }
        provider?.Dispose();
        provider = null;
        return false;
    }

    /// <summary>
    /// The package on the card and trusted there, or false with why not (no managed fall-back). The card has to compute
    /// something before it is trusted, since opening and programming send it no input: the package's golden vectors,
    /// or for a package without any (every model patched by a readout update) two vectors recorded from seeded inputs
    /// on the reference kernels.
    /// </summary>
    internal static bool TryOnCardChecked(ModelPackage package, string path, EngineChoice choice, [NotNullWhen(true)] out IClassifierProvider? provider, out string why)
    {
        GoldenVector[] vectors = package.Manifest.Golden is { Length: > 0 } golden
            ? golden : GoldenVectors.Record(package, GoldenVectors.SeededInputs(package, 2));
        if (!TryCreateChecked(package, path, choice, out provider, out why, vectors)) return false;
        if (provider!.HoldsDevice) return true;
        why = provider.EngineReason;   // the card refused the program and Create fell back to the managed engine
        provider.Dispose();
        provider = null;
        return false;
    }

    /// <summary>The package opened and programmed on the card, or false with the card's refusal (no managed fall-back).</summary>
    internal static bool TryAkida(ModelPackage package, string path, EngineChoice choice, out IClassifierProvider? provider, out string refusal)
    {
        provider = null;
        AkidaDevice? device = null;
        try
        {
            AkidaLibrary.Use(choice.Library ?? AkidaLibrary.DefaultName);
            device = AkidaEngine.OpenAndProgram(package, choice.Device ?? throw new ArgumentException("no Akida device in the choice", nameof(choice)));
            AkidaDevice shared = device;
            // One engine now, so a package the host side cannot serve fails before READY=1, as on the managed path.
            new LesionImageClassifier(package, AkidaEngine.OnDevice(package, shared), options: choice.Classifier).Dispose();
            provider = new PackageClassifierProvider(package, path, $"akida AKD1000 ({shared.Path})",
                $"{choice.Reason}: model {package.Manifest.ModelId} (profile akd1000) programmed on the card",
                p => AkidaEngine.OnDevice(p, shared), owned: shared, options: choice.Classifier);
            refusal = "";
            return true;
        }
        catch (Exception e) when (e is AkidaException or ArgumentException or InvalidOperationException
            or EntryPointNotFoundException or DllNotFoundException)
        {
            device?.Dispose();
            refusal = e is AkidaException a && a.Status == AkidaStatus.Program ? $"the card refused the model: {e.Message}"
                : $"the card could not be used: {e.Message}";
            return false;
        }
    }

    private static string ProfileName(QuantizationProfile profile) => profile switch
    {
        QuantizationProfile.Paper8 => "paper8",
        QuantizationProfile.Akd1000 => "akd1000",
        _ => profile.ToString(),
    };
}
