using System.Diagnostics;

namespace QanaEdge.Devices.Power;

/// <summary>
/// Samples a power sensor on its own thread, keeps the recent samples, learns the idle baseline and turns a
/// time window into energy above idle: E = ∫(P − P_idle) dt, trapezoidal over the samples inside the window
/// (interpolated at its edges). When the sensor refreshes slower than the window is long (a window shorter than
/// two update intervals, or fewer than two samples inside it, e.g. Akida's on-board meter at 141 ms or an hwmon
/// INA226 at 35 ms), the mean power over a batch window of <see cref="BatchWindow"/> ending at the window's end is
/// used instead: E ≈ (P̄_batch − P_idle) × duration.
/// <para>
/// Inferences that run at once (one per worker) share the power above idle: an inference registered with
/// <see cref="BeginInference"/> is charged (P − P_idle) / n(t), n(t) being the number of registered inferences
/// running at t. Charging each its whole window counted the same joules once per worker.
/// </para>
/// A sensor that fails is read again after a pause that doubles up to 5 s. Its failures are counted from the first
/// until it has read without one for <see cref="SteadyAfter"/>, and reported at the 1st, 10th, 100th, ... of them
/// (<see cref="ReadFailed"/>), and once more when it reads steadily again (<see cref="ReadRecovered"/>): at 2 ms a
/// failing chip would otherwise log 500 lines a second, and one that fails every other read (a marginal wire) did,
/// when only failures in a row were counted and every good read between them reported the sensor back.
/// The sampler starts with <see cref="Start"/>, after the caller has attached its handlers: a sampler started by the
/// constructor could fail its first read before the handler was there, and that failure was reported to no one.
/// <see cref="Dispose"/> wakes the sampler from its wait, a failing sensor's pause included.
/// <para>
/// At rest (the baseline known, no work in hand, none for a <see cref="BatchWindow"/>) the sampler reads once every
/// <see cref="RestPeriod"/> instead of every sample period, and <see cref="BeginWork"/> or <see cref="BeginInference(long)"/>
/// wakes it to full rate at once. A device waits for captures most of its day: at 2 ms a sensor was read 500 times a
/// second with nothing to measure, each a bus transfer and a thread woken.
/// </para>
/// <para>
/// An inference that no reading covers when it ends (the first after rest, on a machine too loaded to run the woken
/// sampler before a short inference is over) waits for the sampler's next reading, for at most a
/// <see cref="BatchWindow"/>, and is charged the mean power of the first reading after it. It got no energy at all
/// (energy_mj null) before. A sampler whose sensor fails is not waited for.
/// </para>
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
    private Thread? _thread;
    // Set by Dispose; the sampler waits on it between reads, so that a stop does not wait out a period or a pause.
    private readonly ManualResetEventSlim _stopping = new(false, spinCount: 0);
    private double? _idleWatts;
    // Registered inference windows, running ones with End = long.MaxValue; kept while samples of their time remain.
    private readonly List<(long Start, long End)> _windows = [];
    private readonly List<long> _cuts = [];
    private readonly List<double> _idleSamples = [];
    private readonly int _idleSampleCount;
    // Captures the pipeline holds (BeginWork..EndWork), and when the board last stopped working (a capture settled or an
    // inference ended): the baseline learns only readings of a board at rest, from one update interval after that on.
    private int _work;
    private long _restSince = long.MinValue;
    private readonly long _conversionTicks, _batchWindowTicks;
    // Released to wake a sampler at rest (BeginWork, BeginInference, Dispose); _resting says whether one waits on it, so
    // that the captures of a burst do not each release it.
    private readonly SemaphoreSlim _wake = new(0);
    private volatile bool _resting;
    // Whether the sampler's last read succeeded: only then does an inference that no reading covers wait for the next.
    private volatile bool _reading;
    // Starts of inferences that ended and wait for a reading to be charged (EndInference): their windows are kept meanwhile.
    private readonly List<long> _awaitingReading = [];

    /// <param name="sensor">Owned by the meter.</param>
    /// <param name="samplePeriod">Time between reads; never shorter than the sensor's update interval makes sense.</param>
    /// <param name="idleSamples">Reads averaged (median) into the idle baseline at start; reads taken while the board works
    /// (a registered inference runs, or work begun with <see cref="BeginWork"/> has not ended) are not counted.</param>
    /// <param name="restPeriod">Time between reads at rest (<see cref="RestPeriod"/>); by default 1 s.</param>
    /// <param name="steadyAfter">Time without a failed read that ends a run of failures (<see cref="SteadyAfter"/>); by default 30 s.</param>
    /// <remarks>Nothing is read until <see cref="Start"/> (tests that feed samples with <see cref="AddSample"/> never call it).</remarks>
    public EnergyMeter(IPowerSensor sensor, TimeSpan samplePeriod, int idleSamples = 50, int capacity = 8192, TimeSpan? restPeriod = null,
        TimeSpan? steadyAfter = null)
    {
        SteadyAfter = steadyAfter ?? TimeSpan.FromSeconds(30);
        _sensor = sensor;
        // Reading faster than the sensor converts only repeats its last value.
        _period = samplePeriod > sensor.UpdateInterval ? samplePeriod : sensor.UpdateInterval;
        _ring = new (long, double)[capacity];
        _idleSampleCount = Math.Max(1, idleSamples);
        _conversionTicks = (long)(sensor.UpdateInterval.TotalSeconds * Stopwatch.Frequency);
        BatchWindow = TimeSpan.FromTicks(Math.Max(sensor.UpdateInterval.Ticks * 4, TimeSpan.FromMilliseconds(200).Ticks));
        _batchWindowTicks = (long)(BatchWindow.TotalSeconds * Stopwatch.Frequency);
        RestPeriod = restPeriod is { } rest && rest > _period ? rest : TimeSpan.FromTicks(Math.Max(_period.Ticks, TimeSpan.FromSeconds(1).Ticks));
    }

    /// <summary>Time between reads while the board is at rest: the telemetry's reading is at most this old then.</summary>
    public TimeSpan RestPeriod { get; }

    /// <summary>
    /// Starts the sampler thread; call it once, after attaching <see cref="ReadFailed"/> and <see cref="ReadRecovered"/>,
    /// which the sampler raises from its first read on.
    /// </summary>
    public void Start()
    {
        if (_thread is not null) throw new InvalidOperationException("the power sampler is already started");
        ObjectDisposedException.ThrowIf(_stopping.IsSet, this);
        _thread = new Thread(Loop) { IsBackground = true, Name = "power-sampler", Priority = ThreadPriority.AboveNormal };
        _thread.Start();
    }

    public string SensorName => _sensor.Name;
    public TimeSpan UpdateInterval => _sensor.UpdateInterval;
    public TimeSpan BatchWindow { get; init; }

    /// <summary>The idle baseline in watts once learned, else null.</summary>
    public double? IdleWatts { get { lock (_gate) return _idleWatts; } }

    /// <summary>Last reading, for telemetry. Under the lock: the sampler writes it, and a struct this size is not
    /// written in one piece, so a reader without it could see half of two readings.</summary>
    public PowerReading? Last { get { lock (_gate) return _last?.Reading; } }

    /// <summary>
    /// Last reading with the UTC time it was taken. While the sensor fails, telemetry repeats the last good reading, so
    /// it says when that was: a stale value with a fresh timestamp read as the board's power now.
    /// </summary>
    public (PowerReading Reading, DateTime AtUtc)? LastWithTime { get { lock (_gate) return _last; } }
    private (PowerReading Reading, DateTime AtUtc)? _last;

    /// <summary>Count of failed reads (logged by the caller through <see cref="ReadFailed"/>).</summary>
    public long Failures;

    /// <summary>
    /// A read failed: the first failure since the sensor last read steadily, then the 10th, 100th, ... (with the count
    /// of failures since then).
    /// </summary>
    public event Action<PowerSensorException, long>? ReadFailed;

    /// <summary>The sensor reads steadily again (no failure for <see cref="SteadyAfter"/>) after this many failures.</summary>
    public event Action<long>? ReadRecovered;

    /// <summary>How long a sensor that failed must read without a failure to count as reading steadily again.</summary>
    public TimeSpan SteadyAfter { get; }

    /// <summary>Forces a known idle baseline (tests, or a value measured on a quiet board).</summary>
    public void SetIdle(double watts) { lock (_gate) _idleWatts = watts; }

    private void Loop()
    {
        long periodTicks = (long)(_period.TotalSeconds * Stopwatch.Frequency);
        long next = Stopwatch.GetTimestamp();
        long inARow = 0;
        // Failures since the sensor last read steadily, and when the last of them was.
        long failed = 0, failedAt = 0;
        long steadyTicks = (long)(SteadyAfter.TotalSeconds * Stopwatch.Frequency);
        while (!_stopping.IsSet)
        {
            try
            {
                PowerReading r = _sensor.Read();
                lock (_gate) _last = (r, DateTime.UtcNow);
                _reading = true;
                AddSample(Stopwatch.GetTimestamp(), r.PowerWatts);
                inARow = 0;
                if (failed > 0 && Stopwatch.GetTimestamp() - failedAt >= steadyTicks)
                {
                    ReadRecovered?.Invoke(failed);
                    failed = 0;
                }
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                // Whatever the bus throws (an I2C driver's IOException when the chip stops answering), the sampler
                // lives on: its thread ending would end the daemon.
                Interlocked.Increment(ref Failures);
                _reading = false;
                inARow++;
                failedAt = Stopwatch.GetTimestamp();
                if (IsPowerOfTen(++failed))
                    ReadFailed?.Invoke(e as PowerSensorException ?? new PowerSensorException($"{_sensor.Name}: {e.GetType().Name}: {e.Message}", e), failed);
            }
            if (inARow > 0)
            {
                // A failing sensor is asked again after a pause that doubles, up to 5 s.
                double pause = Math.Min(5.0, _period.TotalSeconds * Math.Pow(2, Math.Min(inARow, 20)));
                if (_stopping.Wait(TimeSpan.FromSeconds(pause))) break;
                next = Stopwatch.GetTimestamp();
                continue;
            }
            if (Rest())
            {
                next = Stopwatch.GetTimestamp();
                continue;
            }
            next += periodTicks;
            long wait = next - Stopwatch.GetTimestamp();
            if (wait > 0)
            {
                if (_stopping.Wait(TimeSpan.FromSeconds((double)wait / Stopwatch.Frequency))) break;
            }
            else next = Stopwatch.GetTimestamp();
        }
    }

    /// <summary>
    /// On the sampler: while the board is at rest, waits a <see cref="RestPeriod"/> or until work begins (or the meter is
    /// disposed), and returns true; false at once when the board is not at rest, for a read at the sample period.
    /// </summary>
    private bool Rest()
    {
        while (_wake.Wait(0)) { }   // wake-ups from before this look
        // Dispose sets the flag before it releases: a stop whose wake-up that drain took ends the sampler here, where it
        // waited out a whole RestPeriod (and Dispose's 2 s join gave up on it).
        if (_stopping.IsSet) return true;
        _resting = true;
        try
        {
            lock (_gate)
            {
                // The trailing batch window after the last piece of work is sampled at full rate: a slow sensor's energy
                // is the mean power over the window that ends with an image.
                if (_idleWatts is null || !AtRest(Stopwatch.GetTimestamp(), _batchWindowTicks)) return false;
            }
            _wake.Wait(RestPeriod);
            return true;
        }
        finally { _resting = false; }
    }

    /// <summary>Wakes a sampler at rest: work begins.</summary>
    private void Wake()
    {
        if (!_resting) return;
        try { _wake.Release(); }
        catch (ObjectDisposedException) { }   // the meter was disposed meanwhile: nothing to wake
    }

    private static bool IsPowerOfTen(long n)
    {
        while (n % 10 == 0) n /= 10;
        return n == 1;
    }

    /// <summary>An inference starts now; returns its start, to pass to <see cref="EndInference(long)"/>.</summary>
    public long BeginInference() => BeginInference(Stopwatch.GetTimestamp());

    /// <summary>An inference starts at a <see cref="Stopwatch"/> timestamp (tests feed their own clock).</summary>
    public long BeginInference(long start)
    {
        lock (_gate) _windows.Add((start, long.MaxValue));
        Wake();
        return start;
    }

    /// <summary>
    /// The inference begun at <paramref name="start"/> ends now: its share of the energy above idle in millijoules
    /// (null as for <see cref="EnergyMillijoules"/>). Every begun inference must end, whatever its outcome.
    /// </summary>
    public double? EndInference(long start) => EndInference(start, Stopwatch.GetTimestamp());

    /// <summary>The inference begun at <paramref name="start"/> ended at <paramref name="end"/>: its share, as above.</summary>
    public double? EndInference(long start, long end)
    {
        lock (_gate)
        {
            // Loops, not FindIndex/RemoveAll with lambdas: their closures would allocate at every image.
            for (int i = 0; i < _windows.Count; i++)
                if (_windows[i].Start == start && _windows[i].End == long.MaxValue) { _windows[i] = (start, end); break; }
            if (end > _restSince) _restSince = end;
            double? energy = EnergyMillijoules(start, end);
            if (energy is null && _idleWatts is not null && _reading && !_stopping.IsSet) energy = WaitForReading(start, end);
            // Forget the windows that ended before every window still to be charged began (this one is charged now):
            // nothing left can overlap them, so the list stays as long as the images in flight and their neighbours.
            long horizon = long.MaxValue;
            foreach (var (s, e) in _windows) if (e == long.MaxValue && s < horizon) horizon = s;
            foreach (long s in _awaitingReading) if (s < horizon) horizon = s;
            int kept = 0;
            for (int i = 0; i < _windows.Count; i++)
            {
                var w = _windows[i];
                if (w.End <= horizon && w.End != long.MaxValue && w.End <= end) continue;
                _windows[kept++] = w;
            }
            _windows.RemoveRange(kept, _windows.Count - kept);
            return energy;
        }
    }

    /// <summary>
    /// Under the lock, for an inference no reading covers yet: waits (the lock released meanwhile) until the sampler has
    /// a reading taken after <paramref name="end"/>, for at most a <see cref="BatchWindow"/>, and charges it then. The
    /// sampler, woken as the capture was taken, reads at once on a machine with a core to spare; on a loaded one it could
    /// be scheduled only after a short inference had ended, and that image got no energy.
    /// </summary>
    private double? WaitForReading(long start, long end)
    {
        _awaitingReading.Add(start);
        try
        {
            long deadline = Stopwatch.GetTimestamp() + _batchWindowTicks;
            while (_count == 0 || At(_count - 1).Ticks <= end)
            {
                long left = deadline - Stopwatch.GetTimestamp();
                if (left <= 0 || _stopping.IsSet || !_reading) return null;
                Monitor.Wait(_gate, TimeSpan.FromSeconds((double)left / Stopwatch.Frequency));
            }
            return EnergyMillijoules(start, end);
        }
        finally { _awaitingReading.Remove(start); }
    }

    /// <summary>How many registered inferences run at <paramref name="t"/> (at least 1: the one asking).</summary>
    private int Running(long t)
    {
        int n = 0;
        foreach (var (s, e) in _windows) if (s <= t && t < e) n++;
        return Math.Max(1, n);
    }

    /// <summary>∫ 1/n(t) dt over [start, end] in seconds, split where registered windows begin and end.</summary>
    private double SharedSeconds(long start, long end)
    {
        var cuts = _cuts;  // reused under the lock: this runs once per image
        cuts.Clear();
        cuts.Add(start);
        cuts.Add(end);
        foreach (var (s, e) in _windows)
        {
            if (s > start && s < end) cuts.Add(s);
            if (e > start && e < end) cuts.Add(e);
        }
        cuts.Sort();
        double seconds = 0;
        for (int i = 1; i < cuts.Count; i++)
            if (cuts[i] > cuts[i - 1]) seconds += (cuts[i] - cuts[i - 1]) / (double)Stopwatch.Frequency / Running(cuts[i - 1] + (cuts[i] - cuts[i - 1]) / 2);
        return seconds;
    }

    /// <summary>Whether a registered inference runs at <paramref name="t"/> (under the lock; allocates nothing).</summary>
    private bool DuringInference(long t)
    {
        foreach (var (s, e) in _windows) if (s <= t && t < e) return true;
        return false;
    }

    /// <summary>
    /// The pipeline took a capture: from now until <see cref="EndWork()"/> the board works on it (hashing, decoding and
    /// classifying, storing, moving the file), and no reading is learned as idle. Energy is still charged to inferences
    /// alone. Every begun piece of work must end.
    /// </summary>
    public void BeginWork()
    {
        lock (_gate) _work++;
        Wake();
    }

    /// <summary>The pipeline is done with a capture (stored and acknowledged, quarantined or given back).</summary>
    public void EndWork() => EndWork(Stopwatch.GetTimestamp());

    /// <summary>The pipeline was done with a capture at a <see cref="Stopwatch"/> timestamp (tests feed their own clock).</summary>
    public void EndWork(long end)
    {
        lock (_gate)
        {
            if (_work > 0) _work--;
            if (end > _restSince) _restSince = end;
        }
    }

    /// <summary>
    /// Whether the board is at rest at <paramref name="t"/> (under the lock): no work in flight, no inference running, and
    /// none that ended within <paramref name="quietTicks"/> before it. A reading is learned as idle with the conversion it
    /// comes from as that span (one update interval: a 35 ms hwmon conversion that ends just after an image still averages
    /// the power of its end); the sampler rests after a <see cref="BatchWindow"/>.
    /// </summary>
    private bool AtRest(long t, long quietTicks)
        => _work == 0 && !DuringInference(t) && (_restSince == long.MinValue || t - _restSince >= quietTicks);

    /// <summary>Records a sample taken at a <see cref="Stopwatch"/> timestamp.</summary>
    public void AddSample(long timestamp, double watts)
    {
        lock (_gate)
        {
            _ring[_head] = (timestamp, watts);
            _head = (_head + 1) % _ring.Length;
            if (_count < _ring.Length) _count++;
            // Only the board at rest is idle. The daemon waits for the baseline before it starts work, but for a bounded
            // time; a sensor that answers only later would otherwise learn it from the images being classified, or from
            // the work between them (hashing, storing, moving files), and every energy_mj after would be low (or 0). On a
            // backlog that never drains the board is never at rest, and energy_mj stays null: there is no idle to measure.
            if (_idleWatts is null && AtRest(timestamp, _conversionTicks))
            {
                _idleSamples.Add(watts);
                if (_idleSamples.Count >= _idleSampleCount)
                {
                    _idleSamples.Sort();
                    _idleWatts = _idleSamples[_idleSamples.Count / 2];
                    _idleSamples.Clear();
                }
            }
            if (_awaitingReading.Count > 0) Monitor.PulseAll(_gate);
        }
    }

    /// <summary>
    /// Energy above idle in millijoules between two <see cref="Stopwatch"/> timestamps, or null when the idle
    /// baseline is not known yet or no sample covers the window: none inside it or in the batch window before its end,
    /// nor one within a batch window after its end (the first reading after it then stands for its mean power).
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
            if (inside >= 2 && end - start >= 2 * UpdateInterval.TotalSeconds * f)
            {
                double joules = 0;
                double prevT = start, prevP = Interpolate(start);
                for (int i = 0; i < _count; i++)
                {
                    var (t, p) = At(i);
                    if (t <= start || t >= end) continue;
                    joules += (t - prevT) / f * ((prevP + p) / 2 - idle) / Running((long)prevT + (t - (long)prevT) / 2);
                    prevT = t; prevP = p;
                }
                double endP = Interpolate(end);
                joules += (end - prevT) / f * ((prevP + endP) / 2 - idle) / Running((long)prevT + (end - (long)prevT) / 2);
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
            if (n == 0)
            {
                // No reading before the end (a sampler woken from rest that had not read yet): the first one after it, a
                // conversion that covers at least the window's end, if it came within a batch window.
                for (int i = 0; i < _count; i++)
                {
                    var (t, p) = At(i);
                    if (t <= end) continue;
                    if (t - end > _batchWindowTicks) break;
                    sum = p; n = 1;
                    break;
                }
                if (n == 0) return null;
            }
            return (sum / n - idle) * SharedSeconds(start, end) * 1000;
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

    /// <summary>
    /// Stops the sampler, which ends at once unless a read is in progress, and disposes the sensor. A read is waited for
    /// up to 2 s (an I2C transfer to a chip that does not answer times out after 1 s); a sensor disposed under a read
    /// that takes longer fails it, and the sampler, stopped, ends after it. Before, a stop waited out the sampler's wait:
    /// a failing sensor's pause of up to 5 s, or a long sampling period.
    /// </summary>
    public void Dispose()
    {
        if (_stopping.IsSet) return;
        _stopping.Set();
        _wake.Release();
        lock (_gate) Monitor.PulseAll(_gate);   // an inference waiting for a reading stops waiting
        bool ended = _thread?.Join(TimeSpan.FromSeconds(2)) ?? true;
        _sensor.Dispose();
        // The events stay while a sampler that outlived the wait may still test them.
        if (ended) { _stopping.Dispose(); _wake.Dispose(); }
    }
}
