using QanaEdge.TestSupport;

namespace QanaEdge.Akida.Tests;

/// <summary>The emulated Akida library bound for this process, and device nodes for it in scratch folders.</summary>
public static class EmulatedCard
{
    /// <summary>Binds the imports to the emulator; fails (never skips) when its build did not run.</summary>
    public static void UseEmulator()
    {
        string path = TestData.AkidaEmulator;
        if (!File.Exists(path)) throw new FileNotFoundException($"the Akida emulator was not built ({path}): build tests/QanaEdge.Akida.Tests", path);
        AkidaLibrary.Use(path);
    }

    /// <summary>A scratch /dev stand-in holding an akida0 node; returns the node's path.</summary>
    public static string DeviceNode()
    {
        string dir = Path.Combine(Path.GetTempPath(), "qana-akida-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        string node = Path.Combine(dir, "akida0");
        File.WriteAllBytes(node, []);
        return node;
    }
}
