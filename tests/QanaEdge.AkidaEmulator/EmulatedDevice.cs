using QanaEdge.Model.Packaging;
using QanaEdge.Runtime;

namespace QanaEdge.AkidaEmulator;

/// <summary>Status codes of native/akida/qana_akida.h.</summary>
internal static class Status
{
    public const int Ok = 0;
    public const int Argument = -1;
    public const int Device = -2;
    public const int Program = -3;
    public const int State = -4;
    public const int Shape = -5;
    public const int Busy = -6;
    public const int Unsupported = -7;
}

/// <summary>A refused call: the status code and the device's one-line reason.</summary>
internal sealed class DeviceException(int status, string message) : Exception(message)
{
    public int Status { get; } = status;
}

/// <summary>
/// One emulated AKD1000 behind a qana_akida_device handle. It behaves as the device does at the ABI: a program
/// the chip cannot run is refused with the reason, calls out of order are refused, and outputs come from executing
/// the programmed integer graph (reference kernels), one input in flight.
/// </summary>
internal sealed class EmulatedDevice(string path)
{
    private IntegerEngine? _engine;
    private int _inputLength, _outputLength;
    private bool _pending;
    private readonly sbyte[] _output = new sbyte[256];

    public string Path { get; } = path;
    public string LastError { get; set; } = "";

    // Device nodes held open in this process: like the driver, the emulator lets one handle own a card at a time.
    private static readonly HashSet<string> s_open = [];

    public static EmulatedDevice Open(string path)
    {
        // The emulated card is a device node that exists (tests create /tmp/.../akida0).
        if (!File.Exists(path) && !Directory.Exists(path)) throw new DeviceException(Status.Device, $"{path}: no such device");
        string node = System.IO.Path.GetFullPath(path);
        lock (s_open)
            if (!s_open.Add(node)) throw new DeviceException(Status.Device, $"{path}: device busy (already open)");
        return new EmulatedDevice(node);
    }

    /// <summary>Releases the card for the next open.</summary>
    public void Close()
    {
        _engine?.Dispose();
        _engine = null;
        lock (s_open) s_open.Remove(Path);
    }

    /// <summary>
    /// While a file <c>NODE.hold</c> exists beside the device node, programming waits, as a slow card's does, and
    /// <c>NODE.held</c> says that one is waiting: tests stop the daemon while it tries to give the model back to the card.
    /// While a file <c>NODE.refuse</c> exists, every program is refused with the program status and the file's text as
    /// the card's message, as a chip refuses a program its constraints do not admit, and each refusal adds a line to
    /// <c>NODE.refused</c>: tests make a card that faulted refuse the same model when it is tried again, and count the tries.
    /// While a file <c>NODE.flip</c> exists, a program the card accepts is stored with one bit of its weight memory flipped
    /// (<see cref="FlipWeightBit"/>), as a weak memory cell does: the card programs without complaint and then computes
    /// another function, so tests can check that nothing trusts a card before it has reproduced known logits.
    /// </summary>
    public void Program(ReadOnlySpan<byte> program)
    {
        if (File.Exists(Path + ".hold"))
        {
            File.WriteAllBytes(Path + ".held", []);
            while (File.Exists(Path + ".hold")) Thread.Sleep(10);
        }
        Unprogram();
        if (File.Exists(Path + ".refuse"))
        {
            File.AppendAllText(Path + ".refused", "refused\n");
            throw new DeviceException(Status.Program, File.ReadAllText(Path + ".refuse"));
        }
        if (program.Length < PackageFormat.Magic.Length || !program[..PackageFormat.Magic.Length].SequenceEqual(PackageFormat.Magic))
            throw new DeviceException(Status.Program, "program refused: not a .qana package (the emulator runs .qana integer graphs)");
        ModelPackage package;
        try { package = PackageReader.Load(program); }
        catch (PackageFormatException e) { throw new DeviceException(Status.Program, $"program refused: {e.Message}"); }
        var problems = ProfileChecker.Check(package);
        if (problems.Count > 0)
        {
            string shown = string.Join("; ", problems.Take(3));
            string more = problems.Count > 3 ? $" (and {problems.Count - 3} more)" : "";
            throw new DeviceException(Status.Program, $"program refused: {problems.Count} AKD1000 constraint violation(s): {shown}{more}");
        }
        if (File.Exists(Path + ".flip")) FlipWeightBit(package);
        IntegerEngine engine;
        try { engine = IntegerEngine.Create(package, KernelMode.Reference, new EngineOptions { CountEvents = false }); }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or NotSupportedException)
        {
            throw new DeviceException(Status.Program, $"program refused: {e.Message}");
        }
        int outputs = package.Graph.Tensors[package.Graph.LogitsTensor].Length;
        if (outputs > _output.Length) throw new DeviceException(Status.Program, $"program refused: {outputs} outputs, the emulator holds {_output.Length}");
        _engine = engine;
        _inputLength = package.Graph.Tensors[package.Graph.InputTensor].Length;
        _outputLength = outputs;
    }

    /// <summary>
    /// Bit 6 of the first weight byte of the first layer, the 8-bit input layer, flipped in the stored program: the first
    /// layer sees every pixel, so the fault reaches the logits of nearly any input, and a flip within the byte keeps the
    /// weight one the chip could hold (the fault is in the memory, after the constraint check accepted the program).
    /// </summary>
    private static void FlipWeightBit(ModelPackage package)
    {
        foreach (var node in package.Graph.Nodes)
        {
            if (node.Weights is not { Length: > 0 } weights) continue;
            weights[0] ^= 0x40;
            return;
        }
    }

    /// <summary>A refused program leaves the device with none, whatever refused it (the library's argument checks too).</summary>
    public void Unprogram()
    {
        _engine = null;
        _pending = false;
    }

    public (int Input, int Output) Shape()
    {
        if (_engine is null) throw new DeviceException(Status.State, "the device has no program");
        return (_inputLength, _outputLength);
    }

    /// <summary>
    /// While a file <c>NODE.fault</c> exists beside the device node, every run fails with a device status, as a card
    /// that has gone bad does (its driver reports an I/O error); tests create and remove it.
    /// </summary>
    public void Enqueue(ReadOnlySpan<sbyte> input)
    {
        if (File.Exists(Path + ".fault")) throw new DeviceException(Status.Device, "device fault: the card stopped answering");
        if (_engine is null) throw new DeviceException(Status.State, "enqueue before program: the device has no program");
        if (_pending) throw new DeviceException(Status.Busy, "an input is already in flight: fetch its output first");
        if (input.Length != _inputLength)
            throw new DeviceException(Status.Shape, $"input of {input.Length} bytes, the program takes {_inputLength}");
        _engine.Run(input);
        _engine.Logits.CopyTo(_output);
        _pending = true;
    }

    public void Fetch(Span<sbyte> logits)
    {
        if (_engine is null) throw new DeviceException(Status.State, "fetch before program: the device has no program");
        if (!_pending) throw new DeviceException(Status.State, "fetch with nothing enqueued");
        if (logits.Length != _outputLength)
            throw new DeviceException(Status.Shape, $"output buffer of {logits.Length} bytes, the program emits {_outputLength}");
        _output.AsSpan(0, _outputLength).CopyTo(logits);
        _pending = false;
    }
}
