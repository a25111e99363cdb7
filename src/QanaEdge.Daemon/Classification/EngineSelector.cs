using System.Runtime.InteropServices;
using QanaEdge.Akida;
using QanaEdge.Daemon.Configuration;
using QanaEdge.Imaging;

namespace QanaEdge.Daemon.Classification;

/// <summary>The engine decision taken once at start: with Akida, the device node and the library to open it through.</summary>
public sealed record EngineChoice(bool UseAkida, string Reason, string? Device = null, string? Library = null)
{
    /// <summary>How each engine's classifier treats a view (the fallback); null: <see cref="ClassifierOptions.Default"/>.</summary>
    public ClassifierOptions? Classifier { get; init; }
}

/// <summary>
/// Akida is chosen when a card is present (devDir/akida*) and the library implementing native/akida/qana_akida.h
/// loads (the board's shim links BrainChip's engine library, so it loads only where that one does too); otherwise
/// the managed integer engine runs. Whether the card then runs the model is <see cref="ClassifierFactory"/>'s call.
/// The decision and its reason go to the log and into the status message.
/// </summary>
public static class EngineSelector
{
    public static EngineChoice Choose(EnginePreference preference, string devDir = "/dev", Func<string, bool>? canLoad = null,
        string library = AkidaLibrary.DefaultName)
    {
        canLoad ??= static name =>
        {
            if (!NativeLibrary.TryLoad(name, typeof(EngineSelector).Assembly, null, out IntPtr handle)) return false;
            NativeLibrary.Free(handle);
            return true;
        };
        if (preference == EnginePreference.Managed)
            return new EngineChoice(false, "managed engine requested by Qana:Engine=Managed");
        string[] devices = Directory.Exists(devDir) ? Directory.GetFiles(devDir, "akida*").Order(StringComparer.Ordinal).ToArray() : [];
        if (devices.Length == 0)
            return new EngineChoice(false, $"no Akida device ({devDir}/akida* absent): managed integer engine");
        if (!canLoad(library))
            return new EngineChoice(false, $"Akida device {devices[0]} present but its library {library} does not load: managed integer engine");
        return new EngineChoice(true, $"Akida device {devices[0]} with {library}", devices[0], library);
    }
}
