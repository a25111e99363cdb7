using QanaEdge.Model.Graph;
using QanaEdge.Model.Packaging;
using QanaEdge.Runtime.Kernels;
using QanaEdge.Runtime.Plan;

namespace QanaEdge.Runtime;

/// <summary>Options beyond the kernel mode.</summary>
public sealed class EngineOptions
{
    /// <summary>Share arena bytes between tensors whose lifetimes do not overlap (default on).</summary>
    public bool ReuseBuffers { get; init; } = true;
    /// <summary>Tensors that keep their own bytes so <see cref="IntegerEngine.Activation"/> reads them without a re-run.</summary>
    public int[] RetainTensors { get; init; } = [];
    /// <summary>Count events (activations ≠ zero point) per layer; on by default, off saves a pass over each input.</summary>
    public bool CountEvents { get; init; } = true;
    /// <summary>Window T of <see cref="KernelMode.TimeStepped"/>.</summary>
    public int TimeSteps { get; init; } = 64;
}

/// <summary>
/// The managed integer engine. <see cref="Create"/> is the prepare step (validation, multipliers, tables,
/// buffer plan, kernel choice); <see cref="Run"/> is the eval step and only dispatches.
/// </summary>
public sealed class IntegerEngine : IInferenceEngine
{
    private readonly ModelGraph _graph;
    private readonly Op[] _ops;
    private readonly ExecState _state;
    private readonly BufferPlan _plan;
    private readonly ReadoutOp? _readout;
    private readonly sbyte[] _lastInput;
    private readonly bool _countEvents;
    private readonly TimeSteppedSimulator? _stepped;
    private ExecState? _fullState;      // lazily built for Activation() of tensors whose bytes were reused
    private BufferPlan? _fullPlan;
    private bool _fullStateCurrent;
    private bool _ran;
    private long _events;

    public string Name { get; }
    public ModelPackage Package { get; }
    public KernelMode Mode { get; }

    private IntegerEngine(ModelPackage package, KernelMode mode, EngineOptions options)
    {
        ArgumentNullException.ThrowIfNull(package);
        Package = package;
        Mode = mode;
        _graph = package.Graph ?? throw new InvalidGraphException("the package has no graph");
        _ops = Planner.Prepare(_graph, mode == KernelMode.Optimized);
        // The time-stepped comparison reads every integer tensor after the run: no reuse there.
        _plan = BufferPlan.Create(_graph, options.ReuseBuffers && mode != KernelMode.TimeStepped, options.RetainTensors.ToHashSet());
        _readout = _ops.OfType<ReadoutOp>().LastOrDefault();
        _state = new ExecState(_plan, _readout?.Output.Length ?? 0, _ops.Length);
        var scratch = new Scratch(_ops.Max(o => o.Scratch.Shorts), _ops.Max(o => o.Scratch.Ints), _ops.Max(o => o.ScratchBytes));
        foreach (var op in _ops) op.Buffers = scratch;
        _lastInput = new sbyte[_graph.Tensors[_graph.InputTensor].Length];
        _countEvents = options.CountEvents;
        if (mode == KernelMode.TimeStepped) _stepped = new TimeSteppedSimulator(package, options.TimeSteps);
        Name = mode switch
        {
            KernelMode.Reference => "integer-reference",
            KernelMode.TimeStepped => $"integer-timestepped-T{options.TimeSteps}",
            _ => "integer-optimized",
        };
    }

    /// <summary>Prepares a package for execution. Throws <see cref="InvalidGraphException"/> with the reason when it cannot run.</summary>
    public static IntegerEngine Create(ModelPackage package, KernelMode mode = KernelMode.Optimized) => new(package, mode, new EngineOptions());

    public static IntegerEngine Create(ModelPackage package, KernelMode mode, EngineOptions options) => new(package, mode, options ?? new EngineOptions());

    /// <summary>Bytes of the shared activation arena (after tensor reuse).</summary>
    public int ArenaBytes => _plan.ArenaBytes;

    /// <summary>Total multiply-accumulates of one run.</summary>
    public long Macs => _ops.Sum(o => o.Macs);

    /// <summary>Per node: name, operator, the kernel chosen at prepare time and its MACs.</summary>
    public IReadOnlyList<(string Node, OpKind Kind, string Kernel, long Macs)> Layers =>
        _ops.Select(o => (o.Node.Name, o.Node.Kind, o.KernelName, o.Macs)).ToArray();

    /// <summary>Per node, the events (input activations ≠ their zero point) of the last run.</summary>
    public ReadOnlySpan<long> LayerEvents => _state.LayerEvents;

    public long Events => _events;

    public ReadOnlySpan<sbyte> Logits
    {
        get
        {
            EnsureRan();
            return _stepped is not null ? _stepped.Logits : _state.Tensor(_graph.LogitsTensor);
        }
    }

    public ReadOnlySpan<int> SpikeCounts
    {
        get
        {
            EnsureRan();
            return _stepped is not null ? _stepped.SpikeCounts : _state.Counts;
        }
    }

    /// <summary>The time-stepped simulation's comparison with the integer run (TimeStepped mode only).</summary>
    public TimeSteppedReport? TimeSteppedReport => _stepped?.LastReport;

    public void Run(ReadOnlySpan<sbyte> input)
    {
        int expected = _lastInput.Length;
        if (input.Length != expected)
            throw new ArgumentException($"the model expects {expected} input values, got {input.Length}", nameof(input));
        input.CopyTo(_lastInput);
        Execute(_state, input);
        if (_stepped is not null) _stepped.Run(input, _state);
        _fullStateCurrent = false;
        _ran = true;
        long total = 0;
        foreach (long e in _state.LayerEvents) total += e;
        _events = total;
    }

    private void Execute(ExecState state, ReadOnlySpan<sbyte> input)
    {
        input.CopyTo(state.Tensor(_graph.InputTensor));
        var ops = _ops;
        for (int i = 0; i < ops.Length; i++)
        {
            var op = ops[i];
            if (_countEvents)
            {
                long e = 0;
                var idx = op.InputIndices;
                var specs = op.Inputs;
                for (int k = 0; k < idx.Length; k++) e += VectorOps.CountEvents(state.Tensor(idx[k]), (sbyte)specs[k].ZeroPoint);
                state.LayerEvents[i] = e;
            }
            op.Eval(state);
        }
    }

    /// <summary>
    /// Times each node over <paramref name="runs"/> runs of <paramref name="input"/> and returns the median
    /// milliseconds per node (analysis; allocates).
    /// </summary>
    public IReadOnlyList<(string Node, string Kernel, double Ms)> ProfileLayers(ReadOnlySpan<sbyte> input, int runs)
    {
        Run(input);
        var samples = new double[_ops.Length][];
        for (int i = 0; i < _ops.Length; i++) samples[i] = new double[runs];
        for (int r = 0; r < runs; r++)
        {
            input.CopyTo(_state.Tensor(_graph.InputTensor));
            for (int i = 0; i < _ops.Length; i++)
            {
                long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
                _ops[i].Eval(_state);
                samples[i][r] = System.Diagnostics.Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
            }
        }
        return _ops.Select((o, i) => { Array.Sort(samples[i]); return (o.Node.Name, o.KernelName, samples[i][runs / 2]); }).ToArray();
    }

    /// <summary>True when <see cref="Activation"/> of this tensor reads the run's own buffer (no buffer reuse overwrote
    /// it, or it was listed in <see cref="EngineOptions.RetainTensors"/>), so reading it costs no second run.</summary>
    public bool Keeps(int tensorIndex) => (uint)tensorIndex < (uint)_plan.Intact.Length && _plan.Intact[tensorIndex];

    /// <summary>
    /// The int8 values of any tensor after the last run (for Grad-CAM). Tensors whose bytes were reused by a
    /// later layer are recomputed once per run into a private, non-shared arena (allocated on first use);
    /// list them in <see cref="EngineOptions.RetainTensors"/> to avoid that.
    /// </summary>
    public ReadOnlySpan<sbyte> Activation(int tensorIndex)
    {
        EnsureRan();
        if ((uint)tensorIndex >= (uint)_graph.Tensors.Length)
            throw new ArgumentOutOfRangeException(nameof(tensorIndex), $"the graph has {_graph.Tensors.Length} tensors");
        if (_graph.Tensors[tensorIndex].Type != DataType.Int8)
            throw new ArgumentException($"tensor {tensorIndex} holds int32 spike counts: read SpikeCounts", nameof(tensorIndex));
        if (_plan.Intact[tensorIndex]) return _state.Tensor(tensorIndex);
        if (_fullState is null)
        {
            _fullPlan = BufferPlan.Create(_graph, reuse: false, new HashSet<int>());
            _fullState = new ExecState(_fullPlan, _state.Counts.Length, _ops.Length);
        }
        if (!_fullStateCurrent)
        {
            Execute(_fullState, _lastInput);
            _fullStateCurrent = true;
        }
        return _fullState.Tensor(tensorIndex);
    }

    public void GetProbabilities(Span<float> probabilities)
    {
        EnsureRan();
        var logits = Logits;
        if (probabilities.Length != logits.Length)
            throw new ArgumentException($"need room for {logits.Length} probabilities", nameof(probabilities));
        if (_readout is null)
        {
            var spec = _graph.Tensors[_graph.LogitsTensor];
            // A validated package has at most MaxClasses logits; a graph built in code may have more.
            Span<double> z = logits.Length <= PackageLimits.MaxClasses ? stackalloc double[logits.Length] : new double[logits.Length];
            for (int k = 0; k < logits.Length; k++) z[k] = spec.Scale * (logits[k] - spec.ZeroPoint);
            SpikingReadout.Softmax(z, probabilities);
            return;
        }
        var cal = Package.Manifest?.Calibration ?? new Calibration();
        SpikingReadout.Probabilities(logits, _readout.Thresholds, _readout.TimeSteps, cal.Beta, cal.StepWeights, probabilities);
    }

    private void EnsureRan()
    {
        if (!_ran) throw new InvalidOperationException("Run has not been called yet");
    }

    public void Dispose() { }
}
