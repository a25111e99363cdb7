using System.Diagnostics;

namespace QanaEdge.Devices.Power;

/// <summary>
/// Samples a power sensor on its own thread, keeps the recent samples, learns the idle baseline and turns a
/// time window into energy above idle: E = ∫(P − P_idle) dt, trapezoidal over the samples inside the window
/// (interpolated at its edges). When the sensor refreshes slower than the window is long (fewer than two
/// fresh conversions inside it, e.g. Akida's on-board meter at 141 ms), the mean power over a batch window
/// of <see cref="BatchWindow"/> ending at the window's end is used instead: E ≈ (P̄_batch − P_idle) × duration.
/// Thread-safe: the sampler writes, any thread may ask for energy.
/// </summary>
public sealed class EnergyMeter : IDisposable
{
    private readonly IPowerSensor _sensor;
    private readonly TimeSpan _period;
    private readonly object _gate = new();
    private readonly (long Ticks, double Watts)[] _ring;
    private int _count;
    private int _head;
    private readonly Thread? _thread;
    private volatile bool _stop;
    private double? _idleWatts;
    private readonly List<double> _idleSamples = [];
    private readonly int _idleSampleCount;

    /// <param name="sensor">Owned by the meter.</param>
    /// <param name="samplePeriod">Time between reads; never shorter than the sensor's update interval makes sense.</param>
    /// <param name="idleSamples">Reads averaged (median) into the idle baseline at start, before any inference runs.</param>
    /// <param name="startThread">False in tests that feed samples with <see cref="AddSample"/>.</param>
    public EnergyMeter(IPowerSensor sensor, TimeSpan samplePeriod, int idleSamples = 50, int capacity = 8192, bool startThread = true)
    {
        _sensor = sensor;
        _period = samplePeriod > TimeSpan.Zero ? samplePeriod : sensor.UpdateInterval;
        _ring = new (long, double)[capacity];
        _idleSampleCount = Math.Max(1, idleSamples);
        BatchWindow = TimeSpan.FromTicks(Math.Max(sensor.UpdateInterval.Ticks * 4, TimeSpan.FromMilliseconds(200).Ticks));
        if (startThread)
        {
            _thread = new Thread(Loop) { IsBackground = true, Name = "power-sampler", Priority = ThreadPriority.AboveNormal };
            _thread.Start();
        }
    }

    public string SensorName => _sensor.Name;
    public TimeSpan UpdateInterval => _sensor.UpdateInterval;
    public TimeSpan BatchWindow { get; init; }

    /// <summary>The idle baseline in watts once learned, else null.</summary>
    public double? IdleWatts { get { lock (_gate) return _idleWatts; } }

    /// <summary>Last reading, for telemetry.</summary>
    public PowerReading? Last { get; private set; }

    /// <summary>Count of failed reads (logged by the caller through <see cref="ReadFailed"/>).</summary>
    public long Failures;

    public event Action<PowerSensorException>? ReadFailed;

    /// <summary>Forces a known idle baseline (tests, or a value measured on a quiet board).</summary>
    public void SetIdle(double watts) { lock (_gate) _idleWatts = watts; }

    private void Loop()
    {
        long periodTicks = (long)(_period.TotalSeconds * Stopwatch.Frequency);
        long next = Stopwatch.GetTimestamp();
        while (!_stop)
        {
            try
            {
                PowerReading r = _sensor.Read();
                Last = r;
                AddSample(Stopwatch.GetTimestamp(), r.PowerWatts);
            }
            catch (PowerSensorException e)
            {
                Interlocked.Increment(ref Failures);
                ReadFailed?.Invoke(e);
            }
            next += periodTicks;
            long wait = next - Stopwatch.GetTimestamp();
            if (wait > 0) Thread.Sleep(TimeSpan.FromSeconds((double)wait / Stopwatch.Frequency));
            else next = Stopwatch.GetTimestamp();
        }
    }

    /// <summary>Records a sample taken at a <see cref="Stopwatch"/> timestamp.</summary>
    public void AddSample(long timestamp, double watts)
    {
        lock (_gate)
        {
            _ring[_head] = (timestamp, watts);
            _head = (_head + 1) % _ring.Length;
            if (_count < _ring.Length) _count++;
            if (_idleWatts is null)
            {
                _idleSamples.Add(watts);
                if (_idleSamples.Count >= _idleSampleCount)
                {
                    _idleSamples.Sort();
                    _idleWatts = _idleSamples[_idleSamples.Count / 2];
                    _idleSamples.Clear();
                }
            }
        }
    }

    /// <summary>
    /// Energy above idle in millijoules between two <see cref="Stopwatch"/> timestamps, or null when the idle
    /// baseline is not known yet or no sample covers the window.
    /// </summary>
    public double? EnergyMillijoules(long start, long end)
    {
        if (end <= start) return null;
        lock (_gate)
        {
            if (_idleWatts is not double idle || _count == 0) return null;
            double f = Stopwatch.Frequency;
            // Samples strictly inside the window, plus the neighbours that bracket its edges.
            int inside = 0;
            for (int i = 0; i < _count; i++)
            {
                long t = At(i).Ticks;
                if (t > start && t < end) inside++;
            }
            if (inside >= 2)
            {
                double joules = 0;
                double prevT = start, prevP = Interpolate(start);
                for (int i = 0; i < _count; i++)
                {
                    var (t, p) = At(i);
                    if (t <= start || t >= end) continue;
                    joules += (t - prevT) / f * ((prevP + p) / 2 - idle);
                    prevT = t; prevP = p;
                }
                double endP = Interpolate(end);
                joules += (end - prevT) / f * ((prevP + endP) / 2 - idle);
                return joules * 1000;
            }
            // Slow sensor: mean power over the batch window ending at `end`.
            long batchStart = end - (long)(BatchWindow.TotalSeconds * f);
            double sum = 0; int n = 0;
            for (int i = 0; i < _count; i++)
            {
                var (t, p) = At(i);
                if (t >= batchStart && t <= end) { sum += p; n++; }
            }
            if (n == 0) return null;
            return (sum / n - idle) * ((end - start) / f) * 1000;
        }
    }

    /// <summary>i-th oldest sample.</summary>
    private (long Ticks, double Watts) At(int i) => _ring[(_head - _count + i + _ring.Length) % _ring.Length];

    /// <summary>Power at time t: linear between the samples around it, held constant beyond the ends.</summary>
    private double Interpolate(long t)
    {
        (long T, double P)? before = null, after = null;
        for (int i = 0; i < _count; i++)
        {
            var s = At(i);
            if (s.Ticks <= t) before = s;
            else { after = s; break; }
        }
        if (before is null) return after!.Value.P;
        if (after is null) return before.Value.P;
        var (t0, p0) = before.Value; var (t1, p1) = after.Value;
        return t1 == t0 ? p1 : p0 + (p1 - p0) * (t - t0) / (double)(t1 - t0);
    }

    public void Dispose()
    {
        _stop = true;
        _thread?.Join(TimeSpan.FromSeconds(2));
        _sensor.Dispose();
    }
}
