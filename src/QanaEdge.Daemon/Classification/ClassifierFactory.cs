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
            else if (TryAkida(package, path, choice, out IClassifierProvider? provider, out string refusal, out _))
                return provider!;
            else
                reason = $"{choice.Reason}, but {refusal}: managed integer engine";
        }
        // Build one engine up front so a package the engine cannot run fails at start, before READY=1. A package file the
        // engine would refuse to prepare (a multiplier it cannot represent, an accumulator that could overflow int32) is
        // refused by its validation at load already; the engine's InvalidGraphException is caught as well, so that a
        // graph that did not come through the loader cannot end the daemon with an unhandled exception either.
        try { new LesionImageClassifier(package, LesionClassifier.CreateEngine(package), options: choice.Classifier).Dispose(); }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or NotSupportedException or PackageFormatException
            or InvalidGraphException)
        {
            throw new ModelUnavailableException($"model {package.Manifest.ModelId} ({path}) cannot run on the managed engine: {e.Message}", e);
        }
        return new PackageClassifierProvider(package, path, $"managed IntegerEngine ({KernelMode.Optimized})", reason,
            p => LesionClassifier.CreateEngine(p), options: choice.Classifier);
    }

    /// <summary>
    /// The provider the daemon starts with: as <see cref="Create"/>, but a model that would go on the card must first
    /// reproduce its check vectors there (<see cref="TryOnCardChecked"/>), since opening and programming send the card no
    /// input. Before, a card that programmed but computed other logits classified every image wrongly, unnoticed. When
    /// the card does not reproduce them or fails (<paramref name="cardFault"/> is then its message), the model starts
    /// on the managed engine with that reason, and the caller has <see cref="CardFailover"/> try the card again as
    /// after a fault. A card that refuses the model's program itself runs it on the managed engine as <see cref="Create"/>
    /// does, with <paramref name="cardFault"/> null: that refusal would come again at every try. Never fails where
    /// <see cref="Create"/> starts: should the managed engine not run the model either, the card runs it as before, its
    /// failed check named in the reason.
    /// </summary>
    public static IClassifierProvider CreateAtStart(ModelPackage package, string path, EngineChoice choice, out string? cardFault)
    {
        cardFault = null;
        if (!choice.UseAkida || package.Manifest.Profile != QuantizationProfile.Akd1000) return Create(package, path, choice);
        if (OnCardAtStart(package, path, choice, out EngineChoice fallback, out string? fault) is { } onCard) return onCard;
        if (fault is null) return Create(package, path, fallback);
        IClassifierProvider managed;
        try { managed = Create(package, path, fallback); }
        catch (ModelUnavailableException)
        {
            return Create(package, path, choice with { Reason = $"{choice.Reason} (its check on the card failed: {fault}; the managed engine cannot run the model)" });
        }
        cardFault = fault;
        return managed;
    }

    /// <summary>
    /// <see cref="TryCreateChecked"/> for the model a start restores from its applied updates, with the card checked as
    /// <see cref="CreateAtStart"/> checks it: when the card does not reproduce the vectors (or does not open) but the
    /// managed engine passes the self-test, the model starts there with <paramref name="cardFault"/> set, and
    /// <see cref="CardFailover"/> tries the card again. Before, such a fault dropped the applied updates for the whole
    /// run: the configured model classified, though the card's check was all that had failed. Unlike the configured
    /// model, one the managed engine fails too is not run: the caller falls back to the configured model.
    /// </summary>
    public static bool TryCreateCheckedAtStart(ModelPackage package, string path, EngineChoice choice, out IClassifierProvider? provider,
        out string? cardFault, out string failure)
    {
        cardFault = null;
        if (!choice.UseAkida || package.Manifest.Profile != QuantizationProfile.Akd1000)
            return TryCreateChecked(package, path, choice, out provider, out failure);
        if (OnCardAtStart(package, path, choice, out EngineChoice fallback, out string? fault) is { } onCard)
        {
            provider = onCard;
            failure = "";
            return true;
        }
        if (!TryCreateChecked(package, path, fallback, out provider, out failure))
        {
            if (fault is not null) failure = $"{failure} (on the card: {fault})";
            return false;
        }
        cardFault = fault;
        return true;
    }

    /// <summary>
    /// The card's check at start: the provider on the card once it reproduced the vectors (<see cref="TryOnCardChecked"/>),
    /// else null with the choice to run the model on instead. <paramref name="cardFault"/> is set when the card failed
    /// (it does not open, faults, or computes other logits), so that it is tried again; it is null when the card refused
    /// the model's program itself, which would come again at every try.
    /// </summary>
    private static IClassifierProvider? OnCardAtStart(ModelPackage package, string path, EngineChoice choice, out EngineChoice fallback, out string? cardFault)
    {
        cardFault = null;
        string why;
        string? modelRefusal;
        try
        {
            if (TryOnCardChecked(package, path, choice, out IClassifierProvider? onCard, out why, out modelRefusal))
            {
                fallback = choice;
                return onCard;
            }
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // Recording the check vectors on the reference kernels failed: the managed engine decides.
            (why, modelRefusal) = ($"{Name(package)} cannot run here: {e.Message}", null);
        }
        if (modelRefusal is not null)
        {
            fallback = choice with { UseAkida = false, Reason = $"{choice.Reason}, but {why}: managed integer engine" };
            return null;
        }
        fallback = AfterCardFault(choice, why);
        cardFault = why;
        return null;
    }

    /// <summary>The engine choice while the card is out of use after a fault: managed, with the card's message as the reason.</summary>
    public static EngineChoice AfterCardFault(EngineChoice choice, string why)
        => choice with { UseAkida = false, Reason = $"the Akida card failed ({why}): managed integer engine" };

    /// <summary>
    /// The engine choice once the card, tried again after a fault, refused the model itself: managed, with the card's
    /// refusal and that the card is not tried again for this model as the reason.
    /// </summary>
    public static EngineChoice AfterCardRefusal(EngineChoice choice, ModelPackage package, string refusal)
        => choice with { UseAkida = false, Reason = $"the Akida card refused model {package.Manifest.ModelId} {package.Manifest.Version} ({refusal}); "
            + "it is not tried again for this model until a model update or a restart: managed integer engine" };

    /// <summary>
    /// <see cref="Create"/>, then one classifier built and the package's golden vectors reproduced on the engine it
    /// got: a provider ready to swap in, or false with why not. Any failure of the build or the self-test counts, a
    /// card fault (AkidaException) included. <paramref name="vectors"/>, when given, are checked instead of the package's.
    /// On the card, a package without golden vectors (every model patched by a readout update) is checked with vectors
    /// recorded from seeded inputs, as <see cref="TryOnCardChecked"/> does: its empty set passed without the card
    /// computing anything, so a readout update was applied onto a card that did not answer.
    /// </summary>
    public static bool TryCreateChecked(ModelPackage package, string path, EngineChoice choice, out IClassifierProvider? provider, out string failure,
        GoldenVector[]? vectors = null)
    {
        provider = null;
        try
        {
            provider = Create(package, path, choice);
            if (vectors is null && provider.HoldsDevice) vectors = CardVectors(package);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            provider?.Dispose();   // a provider on the card holds it: left open, the card would refuse every later open
            provider = null;
            failure = $"{Name(package)} cannot run here: {e.Message}";
            return false;
        }
        if (PassesSelfTest(provider, package, vectors, out failure)) return true;
        provider = null;
        return false;
    }

    /// <summary>
    /// What the card must reproduce before it is trusted, since opening and programming send it no input: the package's
    /// golden vectors, or for a package without any, two vectors recorded from seeded inputs on the reference kernels.
    /// </summary>
    private static GoldenVector[] CardVectors(ModelPackage package)
        => package.Manifest.Golden is { Length: > 0 } golden ? golden : GoldenVectors.Record(package, GoldenVectors.SeededInputs(package, 2));

    /// <summary>
    /// The package on the card and trusted there, or false with why not (no managed fall-back). The card has to compute
    /// something before it is trusted, since opening and programming send it no input: the package's golden vectors,
    /// or for a package without any (every model patched by a readout update) two vectors recorded from seeded inputs
    /// on the reference kernels. <paramref name="modelRefusal"/> is the card's message when it refused the model's
    /// program itself (<see cref="AkidaException.RefusesTheModel"/>): trying the same model again cannot succeed. It is
    /// null for everything that may pass (a card that does not open, faults, is busy, or does not reproduce the vectors).
    /// </summary>
    internal static bool TryOnCardChecked(ModelPackage package, string path, EngineChoice choice, [NotNullWhen(true)] out IClassifierProvider? provider,
        out string why, out string? modelRefusal)
    {
        provider = null;
        modelRefusal = null;
        GoldenVector[] vectors = CardVectors(package);
        IClassifierProvider? onCard;
        try
        {
            if (!TryAkida(package, path, choice, out onCard, out why, out modelRefusal)) return false;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            why = $"{Name(package)} cannot run here: {e.Message}";
            return false;
        }
        if (!PassesSelfTest(onCard!, package, vectors, out why)) return false;
        provider = onCard!;
        return true;
    }

    /// <summary>One classifier built and the vectors reproduced on <paramref name="provider"/>'s engine; on failure it is disposed.</summary>
    private static bool PassesSelfTest(IClassifierProvider provider, ModelPackage package, GoldenVector[]? vectors, out string failure)
    {
        try
        {
            provider.CreateClassifier().Dispose();
            if (provider.SelfTest(vectors) is not { } failed) { failure = ""; return true; }
            failure = $"{Name(package)}: {failed} ({provider.EngineName})";
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            failure = $"{Name(package)} cannot run here: {e.Message}";
        }
        provider.Dispose();
        return false;
    }

    /// <summary>
    /// The package opened and programmed on the card, or false with why not (no managed fall-back):
    /// <paramref name="refusal"/> for the log and the status, and <paramref name="cardRefusal"/>, the card's own
    /// message, when the card refused the model itself (<see cref="AkidaException.RefusesTheModel"/>) rather than failed.
    /// </summary>
    internal static bool TryAkida(ModelPackage package, string path, EngineChoice choice, out IClassifierProvider? provider, out string refusal,
        out string? cardRefusal)
    {
        provider = null;
        cardRefusal = null;
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
            if (e is AkidaException { RefusesTheModel: true })
            {
                cardRefusal = e.Message;
                refusal = $"the card refused the model: {e.Message}";
            }
            else refusal = $"the card could not be used: {e.Message}";
            return false;
        }
        catch
        {
            // Any other failure after the card opened (the host side refusing the package, say) goes to the caller, but
            // not with the card: the driver has one owner per card, so a handle left open would refuse every later open.
            device?.Dispose();
            throw;
        }
    }

    private static string Name(ModelPackage package) => $"{package.Manifest.ModelId} {package.Manifest.Version}";

    private static string ProfileName(QuantizationProfile profile) => profile switch
    {
        QuantizationProfile.Paper8 => "paper8",
        QuantizationProfile.Akd1000 => "akd1000",
        _ => profile.ToString(),
    };
}
