using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace QanaEdge.AkidaEmulator;

/// <summary>
/// The C entry points of native/akida/qana_akida.h. A handle is a GCHandle to an <see cref="EmulatedDevice"/>.
/// No exception crosses the boundary: each becomes a status code and the handle's last error.
/// </summary>
public static unsafe class Exports
{
    private const uint AbiVersion = 1;

    [ThreadStatic] private static IntPtr t_openError;

    // One native copy of each handle's last error, freed when replaced or at close.
    private static readonly Dictionary<IntPtr, IntPtr> s_errors = [];

    [UnmanagedCallersOnly(EntryPoint = "qana_akida_abi_version")]
    public static uint AbiVersionExport() => AbiVersion;

    [UnmanagedCallersOnly(EntryPoint = "qana_akida_open")]
    public static int Open(byte* device, IntPtr* output)
    {
        // Every refusal sets its own message: one left by an earlier open would be taken for this call's reason.
        if (output is null) { SetOpenError("the handle pointer is null"); return Status.Argument; }
        *output = IntPtr.Zero;
        SetOpenError("");
        if (device is null) { SetOpenError("device path is null"); return Status.Argument; }
        try
        {
            var dev = EmulatedDevice.Open(Marshal.PtrToStringUTF8((IntPtr)device) ?? "");
            *output = GCHandle.ToIntPtr(GCHandle.Alloc(dev));
            return Status.Ok;
        }
        catch (DeviceException e) { SetOpenError(e.Message); return e.Status; }
        catch (Exception e) { SetOpenError(e.Message); return Status.Device; }
    }

    [UnmanagedCallersOnly(EntryPoint = "qana_akida_program")]
    public static int Program(IntPtr dev, byte* program, nuint length)
    {
        // As the shim: no bytes at all is the caller's mistake (Argument), not a program the engine refused.
        if (dev != IntPtr.Zero && (program is null || length == 0))
        {
            ((EmulatedDevice)GCHandle.FromIntPtr(dev).Target!).Unprogram();
            return Fail(dev, Status.Argument, "empty program");
        }
        return Call(dev, d => d.Program(new ReadOnlySpan<byte>(program, checked((int)length))));
    }

    [UnmanagedCallersOnly(EntryPoint = "qana_akida_shape")]
    public static int Shape(IntPtr dev, nuint* inputLength, nuint* outputLength)
    {
        if (inputLength is null || outputLength is null) return Fail(dev, Status.Argument, "null length pointer");
        return Call(dev, d =>
        {
            var (i, o) = d.Shape();
            *inputLength = (nuint)i;
            *outputLength = (nuint)o;
        });
    }

    [UnmanagedCallersOnly(EntryPoint = "qana_akida_enqueue")]
    public static int Enqueue(IntPtr dev, sbyte* input, nuint length)
    {
        if (input is null && length != 0) return Fail(dev, Status.Argument, "input is null");
        return Call(dev, d => d.Enqueue(new ReadOnlySpan<sbyte>(input, checked((int)length))));
    }

    [UnmanagedCallersOnly(EntryPoint = "qana_akida_fetch")]
    public static int Fetch(IntPtr dev, sbyte* logits, nuint length)
    {
        if (logits is null && length != 0) return Fail(dev, Status.Argument, "logits buffer is null");
        return Call(dev, d => d.Fetch(new Span<sbyte>(logits, checked((int)length))));
    }

    /// <summary>The handle's last error; for NULL, the calling thread's last open failure or call given no handle.</summary>
    [UnmanagedCallersOnly(EntryPoint = "qana_akida_last_error")]
    public static IntPtr LastError(IntPtr dev)
    {
        if (dev == IntPtr.Zero) return t_openError;
        lock (s_errors) return s_errors.TryGetValue(dev, out IntPtr p) ? p : Empty;
    }

    [UnmanagedCallersOnly(EntryPoint = "qana_akida_close")]
    public static void Close(IntPtr dev)
    {
        if (dev == IntPtr.Zero) return;
        lock (s_errors)
        {
            if (s_errors.Remove(dev, out IntPtr p)) Marshal.FreeCoTaskMem(p);
        }
        GCHandle handle = GCHandle.FromIntPtr(dev);
        ((EmulatedDevice)handle.Target!).Close();
        handle.Free();
    }

    private static IntPtr Empty { get; } = Marshal.StringToCoTaskMemUTF8("");

    private static int Call(IntPtr dev, Action<EmulatedDevice> action)
    {
        if (dev == IntPtr.Zero) return Fail(dev, Status.Argument, "the device handle is null");
        var device = (EmulatedDevice)GCHandle.FromIntPtr(dev).Target!;
        try
        {
            action(device);
            SetError(dev, "");
            return Status.Ok;
        }
        catch (DeviceException e) { SetError(dev, e.Message); return e.Status; }
        catch (OverflowException) { SetError(dev, "length too large"); return Status.Argument; }
        catch (Exception e) { SetError(dev, $"device fault: {e.Message}"); return Status.Device; }
    }

    /// <summary>A refusal's message: on the handle, or, for a call given none, where qana_akida_last_error(NULL) reads it.</summary>
    private static int Fail(IntPtr dev, int status, string message)
    {
        if (dev != IntPtr.Zero) SetError(dev, message);
        else SetOpenError(message);
        return status;
    }

    private static void SetError(IntPtr dev, string message)
    {
        IntPtr copy = Marshal.StringToCoTaskMemUTF8(message);
        lock (s_errors)
        {
            if (s_errors.Remove(dev, out IntPtr old)) Marshal.FreeCoTaskMem(old);
            s_errors[dev] = copy;
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void SetOpenError(string message)
    {
        if (t_openError != IntPtr.Zero) Marshal.FreeCoTaskMem(t_openError);
        t_openError = Marshal.StringToCoTaskMemUTF8(message);
    }
}
