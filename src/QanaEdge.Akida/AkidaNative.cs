using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

[assembly: DisableRuntimeMarshalling]

namespace QanaEdge.Akida;

/// <summary>
/// native/akida/qana_akida.h, one declaration per function. Every parameter is blittable (pointers, sizes, status
/// codes) or the device's <see cref="AkidaHandle"/>, whose generated marshalling only adds and drops a reference
/// around the call: nothing is allocated or copied at run time.
/// </summary>
internal static unsafe partial class AkidaNative
{
    /// <summary>The name every import uses; <see cref="AkidaLibrary"/> maps it to the file that is loaded.</summary>
    public const string Library = "qana_akida";

    public const uint AbiVersion = 1;

    [LibraryImport(Library)] public static partial uint qana_akida_abi_version();
    [LibraryImport(Library)] public static partial int qana_akida_open(byte* device, out AkidaHandle dev);
    [LibraryImport(Library)] public static partial int qana_akida_program(AkidaHandle dev, byte* program, nuint length);
    [LibraryImport(Library)] public static partial int qana_akida_shape(AkidaHandle dev, nuint* inputLength, nuint* outputLength);
    [LibraryImport(Library)] public static partial int qana_akida_enqueue(AkidaHandle dev, sbyte* input, nuint length);
    [LibraryImport(Library)] public static partial int qana_akida_fetch(AkidaHandle dev, sbyte* logits, nuint length);
    [LibraryImport(Library)] public static partial byte* qana_akida_last_error(AkidaHandle dev);

    /// <summary>qana_akida_last_error(NULL): why the calling thread's last open failed.</summary>
    [LibraryImport(Library, EntryPoint = "qana_akida_last_error")] public static partial byte* qana_akida_open_error(IntPtr none);

    [LibraryImport(Library)] public static partial void qana_akida_close(IntPtr dev);
}

/// <summary>
/// An open qana_akida_device. The generated stubs hold a reference to it for the length of each call, so the handle
/// is closed only once no call is using it: neither <see cref="AkidaDevice.Dispose"/> on another thread nor the
/// finalizer (the device object may become unreachable while its last call is still in native code) can close the
/// card under a running enqueue or fetch.
/// </summary>
internal sealed class AkidaHandle : SafeHandleZeroOrMinusOneIsInvalid
{
    public AkidaHandle() : base(ownsHandle: true) { }

    protected override bool ReleaseHandle()
    {
        AkidaNative.qana_akida_close(handle);
        return true;
    }
}

/// <summary>
/// Which file provides native/akida/qana_akida.h. The first P/Invoke binds the library for the life of the process,
/// so <see cref="Use"/> must come before the first device is opened; later calls with another path are refused.
/// </summary>
public static class AkidaLibrary
{
    /// <summary>The shim's file name as the board image installs it (found through the dynamic loader's search path).</summary>
    public const string DefaultName = "libqana_akida.so";

    private static readonly Lock s_lock = new();
    private static string? s_path;

    /// <summary>The library in use (<see cref="DefaultName"/> until <see cref="Use"/> names another).</summary>
    public static string Path => s_path ?? DefaultName;

    /// <summary>Binds the imports to <paramref name="path"/> (a file name for the loader's search, or a path).</summary>
    /// <exception cref="InvalidOperationException">Another library was named before.</exception>
    public static void Use(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        lock (s_lock)
        {
            if (s_path is not null)
            {
                if (s_path == path) return;
                throw new InvalidOperationException($"the Akida library is already {s_path}; a process binds one");
            }
            s_path = path;
            NativeLibrary.SetDllImportResolver(typeof(AkidaLibrary).Assembly, Resolve);
        }
    }

    private static IntPtr Resolve(string name, Assembly assembly, DllImportSearchPath? searchPath)
    {
        if (name != AkidaNative.Library || s_path is null) return IntPtr.Zero;
        // Load, not TryLoad: a zero handle would send the runtime on to its own search, which could bind a different
        // libqana_akida.so than the one configured, or fail with a message that has lost the loader's reason.
        return NativeLibrary.Load(s_path, assembly, searchPath);
    }
}
