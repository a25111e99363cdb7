using QanaEdge.Model.Graph;
using QanaEdge.Model.Packaging;
using QanaEdge.Runtime;

namespace QanaEdge.Akida;

/// <summary>
/// Runs a package's integer graph on an Akida device. The device computes the logits (the chip's last layer emits
/// potentials); the spiking readout, which is a handful of integer operations on seven values, runs here on the host
/// with the same code as the managed engine, and so do the probabilities. Grad-CAM needs intermediate activations,
/// which the device does not return: with this engine <c>LesionClassifier</c> uses the centred crop.
/// Not thread-safe (one engine per thread); engines may share one <see cref="AkidaDevice"/>. Allocation-free per run.
/// </summary>
public sealed class AkidaEngine : IInferenceEngine
{
    private readonly AkidaDevice _device;
    private readonly bool _ownsDevice;
    private readonly Node? _readout;
    private readonly sbyte[] _logits;
    private readonly int[] _counts;
    private readonly TensorSpec _logitsSpec;
    private readonly int _inputLength;
    private bool _ran;

    private AkidaEngine(ModelPackage package, AkidaDevice device, bool ownsDevice)
    {
        Package = package;
        _device = device;
        _ownsDevice = ownsDevice;
        ModelGraph g = package.Graph;
        _logitsSpec = g.Tensors[g.LogitsTensor];
        _inputLength = g.Tensors[g.InputTensor].Length;
        if (!device.IsProgrammed) throw device.NoProgram();
        if (device.InputLength != g.Tensors[g.InputTensor].Length || device.OutputLength != _logitsSpec.Length)
            throw new ArgumentException(
                $"the device is programmed for {device.InputLength} inputs and {device.OutputLength} outputs, the package has {g.Tensors[g.InputTensor].Length} and {_logitsSpec.Length}",
                nameof(device));
        _readout = g.Nodes.LastOrDefault(n => n.Kind == OpKind.SpikingReadout && n.Inputs[0] == g.LogitsTensor);
        _logits = new sbyte[_logitsSpec.Length];
        _counts = new int[_readout is null ? 0 : _logitsSpec.Length];
        Name = $"akida ({device.Path})";
    }

    /// <summary>
    /// Opens <paramref name="devicePath"/>, programs it with <paramref name="package"/> (its .qana bytes) and returns
    /// an engine that owns the device.
    /// </summary>
    /// <exception cref="AkidaException">The device could not be opened or refused the program (its message says why).</exception>
    public static AkidaEngine Open(ModelPackage package, string devicePath)
    {
        AkidaDevice device = OpenAndProgram(package, devicePath);
        return new AkidaEngine(package, device, ownsDevice: true);
    }

    /// <summary>Opens and programs a device to be shared by several engines (<see cref="OnDevice"/>).</summary>
    public static AkidaDevice OpenAndProgram(ModelPackage package, string devicePath)
    {
        ArgumentNullException.ThrowIfNull(package);
        AkidaDevice device = AkidaDevice.Open(devicePath);
        try { device.Program(PackageWriter.ToBytes(package)); }
        catch
        {
            device.Dispose();
            throw;
        }
        return device;
    }

    /// <summary>An engine on a device already programmed with <paramref name="package"/>; the caller keeps the device.</summary>
    public static AkidaEngine OnDevice(ModelPackage package, AkidaDevice device)
    {
        ArgumentNullException.ThrowIfNull(package);
        ArgumentNullException.ThrowIfNull(device);
        return new AkidaEngine(package, device, ownsDevice: false);
    }

    public string Name { get; }
    public ModelPackage Package { get; }

    public void Run(ReadOnlySpan<sbyte> input)
    {
        // The package's length, not the device's: a device whose program was replaced or refused since is the
        // device's fault (AkidaException from Run), not the caller's.
        if (input.Length != _inputLength)
            throw new ArgumentException($"the model expects {_inputLength} input values, got {input.Length}", nameof(input));
        _device.Run(input, _logits);
        if (_readout is not null) SpikingReadout.ClosedForm(_logits, _readout.Thresholds!, _readout.TimeSteps, _counts);
        _ran = true;
    }

    public ReadOnlySpan<sbyte> Logits
    {
        get
        {
            EnsureRan();
            return _logits;
        }
    }

    public ReadOnlySpan<int> SpikeCounts
    {
        get
        {
            EnsureRan();
            return _counts;
        }
    }

    /// <summary>The device does not report its events: always 0.</summary>
    public long Events => 0;

    public void GetProbabilities(Span<float> probabilities)
    {
        EnsureRan();
        if (probabilities.Length != _logits.Length)
            throw new ArgumentException($"need room for {_logits.Length} probabilities", nameof(probabilities));
        if (_readout is null)
        {
            Span<double> z = stackalloc double[_logits.Length];
            for (int k = 0; k < _logits.Length; k++) z[k] = _logitsSpec.Scale * (_logits[k] - _logitsSpec.ZeroPoint);
            SpikingReadout.Softmax(z, probabilities);
            return;
        }
        var cal = Package.Manifest?.Calibration ?? new Calibration();
        SpikingReadout.Probabilities(_logits, _readout.Thresholds!, _readout.TimeSteps, cal.Beta, cal.StepWeights, probabilities);
    }

    private void EnsureRan()
    {
        if (!_ran) throw new InvalidOperationException("Run has not been called yet");
    }

    public void Dispose()
    {
        if (_ownsDevice) _device.Dispose();
    }
}
