using System.Runtime.InteropServices;
using QanaEdge.Daemon.Configuration;

namespace QanaEdge.Daemon.Classification;

/// <summary>The engine decision taken once at start.</summary>
public sealed record EngineChoice(bool UseAkida, string Reason);

/// <summary>
/// Akida is used when a card is present (/dev/akida*) and the native engine library loads; otherwise the managed
/// integer engine runs. The decision and its reason go to the log and into the status message.
/// </summary>
public static class EngineSelector
{
    /// <summary>Native library names tried, in order (BrainChip's engine library as packaged for the board).</summary>
    public static readonly string[] AkidaLibraries = ["libakida.so", "akida"];

    public static EngineChoice Choose(EnginePreference preference, string devDir = "/dev", Func<string, bool>? canLoad = null)
    {
        canLoad ??= static name =>
        {
            if (!NativeLibrary.TryLoad(name, out IntPtr handle)) return false;
            NativeLibrary.Free(handle);
            return true;
        };
        if (preference == EnginePreference.Managed)
            return new EngineChoice(false, "managed engine requested by Qana:Engine=Managed");
        string[] devices = Directory.Exists(devDir) ? Directory.GetFiles(devDir, "akida*") : [];
        if (devices.Length == 0)
            return new EngineChoice(false, $"no Akida device ({devDir}/akida* absent): managed integer engine");
        string? library = AkidaLibraries.FirstOrDefault(canLoad);
        if (library is null)
            return new EngineChoice(false, $"Akida device {devices[0]} present but no loadable engine library ({string.Join(", ", AkidaLibraries)}): managed integer engine");
        return new EngineChoice(true, $"Akida device {devices[0]} with {library}");
    }
}
