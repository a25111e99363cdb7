using System.Runtime.InteropServices;
using System.Text;

namespace QanaEdge.Akida;

/// <summary>
/// One Akida device opened through native/akida/qana_akida.h. Thread-safe: <see cref="Run"/> holds the device for
/// one enqueue/fetch pair, so several engines (one per worker thread) can share a card.
/// </summary>
public sealed unsafe class AkidaDevice : IDisposable
{
    private readonly Lock _lock = new();
    private readonly AkidaHandle _handle;

    public string Path { get; }
    /// <summary>
    /// Input (int8 HWC) and output (int8 logits) lengths of the program; 0 until programmed, and again after a
    /// program that failed (the device then holds none).
    /// </summary>
    public int InputLength { get; private set; }
    public int OutputLength { get; private set; }

    /// <summary>True once a program was accepted, false again after one was refused.</summary>
    public bool IsProgrammed => OutputLength > 0;

    private AkidaDevice(string path, AkidaHandle handle)
    {
        Path = path;
        _handle = handle;
    }

    /// <summary>Opens <paramref name="path"/> (e.g. /dev/akida0) through the library <see cref="AkidaLibrary"/> names.</summary>
    /// <exception cref="AkidaException">The library is missing or of another ABI version, or the device refused to open.</exception>
    public static AkidaDevice Open(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        uint version;
        try { version = AkidaNative.qana_akida_abi_version(); }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            throw new AkidaException(AkidaStatus.Unsupported, $"{AkidaLibrary.Path} cannot be loaded: {e.Message}", e);
        }
        if (version != AkidaNative.AbiVersion)
            throw new AkidaException(AkidaStatus.Unsupported, $"{AkidaLibrary.Path} implements ABI version {version}, this build needs {AkidaNative.AbiVersion}");
        byte[] utf8 = Encoding.UTF8.GetBytes(path + "\0");
        AkidaHandle handle;
        int status;
        fixed (byte* p = utf8) status = AkidaNative.qana_akida_open(p, out handle);
        if (status != 0 || handle.IsInvalid)
        {
            handle.Dispose();
            throw new AkidaException(ToStatus(status, AkidaStatus.Device), $"{path}: {OpenError("open failed")}");
        }
        return new AkidaDevice(path, handle);
    }

    /// <summary>
    /// Programs the device; on refusal the device's own reason is the exception's message, and the device holds no
    /// program (the library refuses runs until one is accepted; see <see cref="IsProgrammed"/>).
    /// </summary>
    /// <exception cref="AkidaException">With <see cref="AkidaException.FromProgram"/> set when the program call failed:
    /// <see cref="AkidaException.RefusesTheModel"/> tells a refused program from a fault of the card.</exception>
    public void Program(ReadOnlySpan<byte> program)
    {
        lock (_lock)
        {
            AkidaHandle h = Handle();
            // The old program is gone whatever happens next: lengths kept from it would let an engine built for the
            // old program pass its checks against a card that holds nothing.
            InputLength = OutputLength = 0;
            int status;
            fixed (byte* p = program) status = AkidaNative.qana_akida_program(h, p, (nuint)program.Length);
            if (status != 0)
                throw new AkidaException(ToStatus(status, AkidaStatus.Device), Message(h, $"status {status}")) { FromProgram = true };
            nuint input, output;
            Check(h, AkidaNative.qana_akida_shape(h, &input, &output));
            InputLength = checked((int)input);
            OutputLength = checked((int)output);
        }
    }

    /// <summary>One inference: enqueue <paramref name="input"/>, block for its logits. Allocates nothing.</summary>
    /// <exception cref="AkidaException">The device failed or refused the run; <see cref="AkidaStatus.State"/> when it holds no program.</exception>
    public void Run(ReadOnlySpan<sbyte> input, Span<sbyte> logits)
    {
        lock (_lock)
        {
            AkidaHandle h = Handle();
            if (!IsProgrammed) throw NoProgram();
            Check(h, Enqueue(h, input));
            Check(h, Fetch(h, logits));
        }
    }

    /// <summary>The raw calls, for tests of the device's behaviour at the ABI: returns the status, no exception.</summary>
    public AkidaStatus TryEnqueue(ReadOnlySpan<sbyte> input, out string error)
    {
        lock (_lock)
        {
            AkidaHandle h = Handle();
            return Report(h, Enqueue(h, input), out error);
        }
    }

    /// <inheritdoc cref="TryEnqueue"/>
    public AkidaStatus TryFetch(Span<sbyte> logits, out string error)
    {
        lock (_lock)
        {
            AkidaHandle h = Handle();
            return Report(h, Fetch(h, logits), out error);
        }
    }

    private static int Enqueue(AkidaHandle h, ReadOnlySpan<sbyte> input)
    {
        fixed (sbyte* i = input) return AkidaNative.qana_akida_enqueue(h, i, (nuint)input.Length);
    }

    private static int Fetch(AkidaHandle h, Span<sbyte> logits)
    {
        fixed (sbyte* o = logits) return AkidaNative.qana_akida_fetch(h, o, (nuint)logits.Length);
    }

    /// <summary>A raw call's status as <see cref="AkidaStatus"/>, with the device's message when it failed.</summary>
    private static AkidaStatus Report(AkidaHandle h, int status, out string error)
    {
        error = status == 0 ? "" : Message(h, "");
        return ToStatus(status, AkidaStatus.Device);
    }

    private AkidaHandle Handle() => !_handle.IsClosed ? _handle : throw new ObjectDisposedException(nameof(AkidaDevice));

    /// <summary>Why a run was refused without asking the library: an engine must not run on what an old program left.</summary>
    internal AkidaException NoProgram() => new(AkidaStatus.State, $"{Path}: the device holds no program (none was given, or the last one failed)");

    private static void Check(AkidaHandle h, int status)
    {
        if (status != 0) throw new AkidaException(ToStatus(status, AkidaStatus.Device), Message(h, $"status {status}"));
    }

    private static AkidaStatus ToStatus(int status, AkidaStatus fallback) =>
        status == 0 ? AkidaStatus.Ok : Enum.IsDefined((AkidaStatus)status) ? (AkidaStatus)status : fallback;

    private static string Message(AkidaHandle h, string fallback) => Text(AkidaNative.qana_akida_last_error(h), fallback);

    private static string OpenError(string fallback) => Text(AkidaNative.qana_akida_open_error(IntPtr.Zero), fallback);

    private static string Text(byte* m, string fallback)
    {
        string? s = m is null ? null : Marshal.PtrToStringUTF8((IntPtr)m);
        return string.IsNullOrEmpty(s) ? fallback : s;
    }

    /// <summary>Closes the device once no call is using it (the handle's own finalizer closes one never disposed).</summary>
    public void Dispose()
    {
        lock (_lock) _handle.Dispose();
    }
}
