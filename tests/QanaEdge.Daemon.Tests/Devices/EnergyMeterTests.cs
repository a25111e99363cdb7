using System.Diagnostics;
using QanaEdge.Devices.Power;
using QanaEdge.Daemon.Tests.Infrastructure;
using QanaEdge.TestSupport;

namespace QanaEdge.Daemon.Tests.Devices;

public sealed class EnergyMeterTests
{
    private sealed class FixedSensor(TimeSpan interval) : IPowerSensor
    {
        public string Name => "fixed";
        public TimeSpan UpdateInterval => interval;
        public PowerReading Read() => new(5, 0.4, 2);
        public void Dispose() { }
    }

    private static long Ms(double ms) => (long)(ms * Stopwatch.Frequency / 1000.0);

    [Fact]
    public void Integrates_power_above_idle_over_the_inference_window()
    {
        using var meter = new EnergyMeter(new FixedSensor(TimeSpan.FromMilliseconds(1)), TimeSpan.FromMilliseconds(1), idleSamples: 4);
        long t = 1_000_000;
        for (int i = 0; i < 4; i++) meter.AddSample(t + Ms(i), 2.0); // idle 2 W
        Assert.Equal(2.0, meter.IdleWatts);
        // A 10 ms inference at 3 W flat (1 W above idle) → 10 mJ; samples every 1 ms.
        long start = t + Ms(10);
        for (int i = 0; i <= 10; i++) meter.AddSample(start + Ms(i), 3.0);
        meter.AddSample(start + Ms(11), 2.0);
        Assert.Equal(10.0, meter.EnergyMillijoules(start, start + Ms(10))!.Value, 6);
        // A ramp from 2 W to 4 W over 10 ms: ∫(P − 2) dt = ½ × 2 W × 10 ms = 10 mJ.
        long ramp = t + Ms(100);
        for (int i = 0; i <= 10; i++) meter.AddSample(ramp + Ms(i), 2.0 + 0.2 * i);
        Assert.Equal(10.0, meter.EnergyMillijoules(ramp, ramp + Ms(10))!.Value, 6);
    }

    [Fact]
    public void Slow_sensor_uses_the_mean_power_of_a_batch_window()
    {
        // Akida-like meter: a fresh value every 141 ms, inferences of 5 ms.
        using var meter = new EnergyMeter(new FixedSensor(TimeSpan.FromMilliseconds(141)), TimeSpan.FromMilliseconds(141), idleSamples: 1);
        long t = 5_000_000;
        meter.AddSample(t, 1.0); // idle 1 W
        for (int i = 1; i <= 6; i++) meter.AddSample(t + Ms(141 * i), 2.5); // busy stream at 2.5 W
        long end = t + Ms(141 * 6 + 10);
        double? e = meter.EnergyMillijoules(end - Ms(5), end);
        Assert.Equal(1.5 * 5, e!.Value, 6); // (2.5 − 1) W × 5 ms
        Assert.True(meter.BatchWindow >= TimeSpan.FromMilliseconds(141 * 4));
    }

    [Fact]
    public void No_energy_before_the_idle_baseline_is_known()
    {
        using var meter = new EnergyMeter(new FixedSensor(TimeSpan.FromMilliseconds(1)), TimeSpan.FromMilliseconds(1), idleSamples: 100);
        meter.AddSample(1000, 2);
        meter.AddSample(1000 + Ms(1), 2);
        Assert.Null(meter.EnergyMillijoules(1000, 1000 + Ms(1)));
    }

    /// <summary>
    /// The daemon waits for the baseline before its workers start, but only for a bounded time: a sensor that starts
    /// answering later (a kernel driver bound late, a loose wire) learned its baseline from the backlog it found being
    /// classified. Readings taken while an inference runs are not idle and are not part of the baseline.
    /// </summary>
    [Fact]
    public void Readings_taken_while_an_inference_runs_are_not_learned_as_idle()
    {
        using var meter = new EnergyMeter(new FixedSensor(TimeSpan.FromMilliseconds(1)), TimeSpan.FromMilliseconds(1), idleSamples: 4);
        long t = 3_000_000;
        meter.AddSample(t, 2.0);
        meter.AddSample(t + Ms(1), 2.0);
        long w = meter.BeginInference(t + Ms(2));
        for (int i = 2; i <= 12; i++) meter.AddSample(t + Ms(i), 6.0); // the board classifying: 6 W
        Assert.Null(meter.EndInference(w, t + Ms(12) + 1));
        Assert.Null(meter.IdleWatts);
        // The conversion the reading at 13 ms comes from (one update interval, 1 ms) began while the inference ran.
        meter.AddSample(t + Ms(13), 2.0);
        meter.AddSample(t + Ms(14), 2.0);
        Assert.Null(meter.IdleWatts);
        meter.AddSample(t + Ms(15), 2.0);
        Assert.Equal(2.0, meter.IdleWatts);
    }

    /// <summary>
    /// Between its inferences the board is not at rest either: it hashes the next capture, stores the last result and
    /// moves its file. Readings taken from when the pipeline takes a capture until it is settled, and those whose
    /// conversion overlaps that end, are not learned as idle; before, the readings between inferences were, and on a
    /// backlog the baseline came from them.
    /// </summary>
    [Fact]
    public void Readings_taken_while_the_pipeline_works_between_inferences_are_not_learned_as_idle()
    {
        using var meter = new EnergyMeter(new FixedSensor(TimeSpan.FromMilliseconds(1)), TimeSpan.FromMilliseconds(1), idleSamples: 4);
        long t = 4_000_000;
        meter.AddSample(t, 2.0);
        meter.AddSample(t + Ms(1), 2.0);
        meter.BeginWork();                                  // a worker takes a capture and hashes it: 4 W
        meter.AddSample(t + Ms(2), 4.0);
        long w = meter.BeginInference(t + Ms(3));
        for (int i = 3; i <= 6; i++) meter.AddSample(t + Ms(i), 6.0); // classifying: 6 W
        Assert.Null(meter.EndInference(w, t + Ms(6) + 1));
        for (int i = 7; i <= 20; i++) meter.AddSample(t + Ms(i), 4.0); // storing the result, moving the file: 4 W
        Assert.Null(meter.IdleWatts);
        meter.EndWork(t + Ms(20) + 1);
        meter.AddSample(t + Ms(21), 4.0);                   // its conversion began before the work ended
        Assert.Null(meter.IdleWatts);
        meter.AddSample(t + Ms(22), 2.0);
        meter.AddSample(t + Ms(23), 2.0);
        Assert.Equal(2.0, meter.IdleWatts);
    }

    [Fact]
    public void Sampling_thread_reads_the_sensor_and_learns_idle()
    {
        using var meter = new EnergyMeter(new FixedSensor(TimeSpan.FromMilliseconds(1)), TimeSpan.FromMilliseconds(1), idleSamples: 5);
        meter.Start();
        var sw = Stopwatch.StartNew();
        while (meter.IdleWatts is null && sw.Elapsed < TimeSpan.FromSeconds(5)) Thread.Sleep(5);
        Assert.Equal(2.0, meter.IdleWatts);
        Assert.Equal(2.0, meter.Last!.Value.PowerWatts);
    }

    [Fact]
    public void Inferences_that_run_at_once_share_the_power_above_idle()
    {
        using var meter = new EnergyMeter(new FixedSensor(TimeSpan.FromMilliseconds(1)), TimeSpan.FromMilliseconds(1), idleSamples: 1);
        long t = 2_000_000;
        meter.AddSample(t, 2.0); // idle 2 W
        for (int i = 1; i <= 40; i++) meter.AddSample(t + Ms(i), 4.0); // 2 W above idle throughout

        // Two workers, one image each over the same 10 ms: 20 mJ were spent above idle, not 40.
        long a = meter.BeginInference(t + Ms(5)), b = meter.BeginInference(t + Ms(5));
        double ea = meter.EndInference(a, t + Ms(15))!.Value, eb = meter.EndInference(b, t + Ms(15))!.Value;
        Assert.Equal(10.0, ea, 6);
        Assert.Equal(10.0, eb, 6);

        // Overlapping by half: alone 5 ms (10 mJ), shared 5 ms (5 mJ) each; together 30 mJ over 15 ms.
        long c = meter.BeginInference(t + Ms(20)), d = meter.BeginInference(t + Ms(25));
        double ec = meter.EndInference(c, t + Ms(30))!.Value, ed = meter.EndInference(d, t + Ms(35))!.Value;
        Assert.Equal(15.0, ec, 6);
        Assert.Equal(15.0, ed, 6);
    }

    /// <summary>
    /// Charging an image its energy runs once per image for the daemon's lifetime, so it allocates nothing once the
    /// meter's lists have grown: the fast path (samples inside the window) and the slow sensor's batch mean, whose
    /// shared time splits the window where other inferences begin and end, both with two inferences overlapping.
    /// </summary>
    [Theory]
    [InlineData(1)]
    [InlineData(141)]
    public void Charging_an_inference_allocates_nothing_once_warmed_up(int sensorMs)
    {
        using var meter = new EnergyMeter(new FixedSensor(TimeSpan.FromMilliseconds(sensorMs)), TimeSpan.FromMilliseconds(sensorMs), idleSamples: 1);
        long t = 3_000_000;
        meter.AddSample(t - Ms(5000), 2.0); // idle 2 W, well before the slow sensor's batch window
        for (int i = 1; i <= 1000; i++) meter.AddSample(t + Ms(i), 4.0); // past the measurement's three attempts of 200 ms

        double ChargeTwoOverlapping(long at)
        {
            long a = meter.BeginInference(at), b = meter.BeginInference(at + Ms(2));
            return meter.EndInference(a, at + Ms(6))!.Value + meter.EndInference(b, at + Ms(8))!.Value;
        }

        long at = t + Ms(10);
        double warm = ChargeTwoOverlapping(at);
        double total = 0;
        // Time moves on through every attempt: the meter's windows only go forwards.
        long allocated = Allocations.OnThisThread(() =>
        {
            total = 0;
            for (int k = 1; k <= 20; k++) total += ChargeTwoOverlapping(at += Ms(10));
        });

        Assert.Equal(0, allocated);
        // 2 W above idle over the union of both windows (8 ms) is 16 mJ, whichever way it is shared.
        Assert.Equal(16.0, warm, 6);
        Assert.Equal(20 * 16.0, total, 4);
    }

    private sealed class FlakySensor : IPowerSensor
    {
        public volatile bool Broken = true;
        private int _reads;
        public int Reads => Volatile.Read(ref _reads);
        /// <summary>The thread of the last read (the sampler's), and a signal at each read.</summary>
        public Thread? Reader { get; private set; }
        public ManualResetEventSlim WasRead { get; } = new();
        public string Name => "flaky";
        public TimeSpan UpdateInterval => TimeSpan.FromMilliseconds(1);
        public PowerReading Read()
        {
            Interlocked.Increment(ref _reads);
            Reader = Thread.CurrentThread;
            WasRead.Set();
            return Broken ? throw new IOException("Error 121 (remote I/O error)") : new PowerReading(5, 0.4, 2);
        }
        public void Dispose() { }
    }

    /// <summary>
    /// At rest (the baseline known, no work) the sensor is read once a rest period, not every sample period; work wakes
    /// the sampler to full rate at once, and once the work and a batch window after it are over it rests again. At 2 ms
    /// the sensor was read 500 times a second on a device waiting for captures.
    /// </summary>
    [Fact]
    public async Task At_rest_the_sensor_is_read_once_a_rest_period_and_work_wakes_the_sampler()
    {
        var sensor = new FlakySensor { Broken = false };
        using var meter = new EnergyMeter(sensor, TimeSpan.FromMilliseconds(1), idleSamples: 5, restPeriod: TimeSpan.FromSeconds(30));
        Assert.Equal(TimeSpan.FromSeconds(30), meter.RestPeriod);
        meter.Start();
        await TestEnv.WaitUntil(() => meter.IdleWatts is not null, TimeSpan.FromSeconds(10), "the idle baseline");

        int atRest = sensor.Reads;
        await Task.Delay(300);
        Assert.InRange(sensor.Reads, atRest, atRest + 1);   // the read in progress at most: the next is 30 s away

        meter.BeginWork();
        await TestEnv.WaitUntil(() => sensor.Reads >= atRest + 50, TimeSpan.FromSeconds(10), "reads at full rate once work begins",
            () => $"{sensor.Reads - atRest} reads");
        meter.EndWork();
        // Rests again after the trailing batch window (200 ms): a 300 ms stretch with the read in progress at most.
        await TestEnv.WaitUntil(() =>
        {
            int reads = sensor.Reads;
            Thread.Sleep(300);
            return sensor.Reads - reads <= 1;
        }, TimeSpan.FromSeconds(10), "the sampler to rest again", () => $"{sensor.Reads} reads");
    }

    /// <summary>A sensor that fails every other read while <see cref="Flaky"/>, as a bus with a marginal wire does.</summary>
    private sealed class IntermittentSensor : IPowerSensor
    {
        public volatile bool Flaky = true;
        private int _reads;
        public string Name => "intermittent";
        public TimeSpan UpdateInterval => TimeSpan.FromMilliseconds(1);
        public PowerReading Read()
        {
            bool fail = Interlocked.Increment(ref _reads) % 2 == 0;
            return Flaky && fail ? throw new IOException("Error 121 (remote I/O error)") : new PowerReading(5, 0.4, 2);
        }
        public void Dispose() { }
    }

    /// <summary>
    /// A sensor that fails one read in two never fails twice in a row: each failure was the first of its run and was
    /// reported, each good read after it reported the sensor back, two warnings per failure, hundreds a second at
    /// 1 ms. The failures are counted from the first until the sensor has read without one for a while (here 1 s),
    /// and reported at the 1st, 10th, 100th ... of them; the sensor is reported back once, with the count, after that.
    /// </summary>
    [Fact]
    public async Task A_sensor_that_fails_every_other_read_is_reported_sparingly_not_at_every_failure()
    {
        var sensor = new IntermittentSensor();
        using var meter = new EnergyMeter(sensor, TimeSpan.FromMilliseconds(1), idleSamples: 1, steadyAfter: TimeSpan.FromSeconds(1));
        var reported = new System.Collections.Concurrent.ConcurrentQueue<long>();
        var recoveries = new System.Collections.Concurrent.ConcurrentQueue<long>();
        meter.ReadFailed += (_, n) => reported.Enqueue(n);
        meter.ReadRecovered += n => recoveries.Enqueue(n);
        meter.BeginWork();   // the board at work: the sampler reads at full rate, as it does while images are classified
        meter.Start();
        await TestEnv.WaitUntil(() => Interlocked.Read(ref meter.Failures) >= 40 && reported.Contains(10), TimeSpan.FromSeconds(30),
            "40 failed reads", () => $"{meter.Failures} failures, {reported.Count} reported");

        Assert.Equal([1L, 10L], reported.Take(2));
        Assert.All(reported, n => Assert.Contains(n, (long[])[1, 10, 100, 1000]));
        Assert.Empty(recoveries);

        sensor.Flaky = false;
        await TestEnv.WaitUntil(() => !recoveries.IsEmpty, TimeSpan.FromSeconds(30), "the sensor reported back");
        Assert.Single(recoveries);
        Assert.True(recoveries.Single() >= 40, $"back after {recoveries.Single()} failed reads");
        meter.EndWork();
    }

    /// <summary>A sensor whose reads can be held, as a sampler the scheduler has not run yet is: the read waits for the gate.</summary>
    private sealed class HeldSensor : IPowerSensor
    {
        private readonly ManualResetEventSlim _gate = new(initialState: true);
        public volatile bool Busy;
        public string Name => "held";
        public TimeSpan UpdateInterval => TimeSpan.FromMilliseconds(1);
        public void Hold() => _gate.Reset();
        public void Release() => _gate.Set();
        public PowerReading Read()
        {
            _gate.Wait();
            return Busy ? new PowerReading(5, 0.6, 3) : new PowerReading(5, 0.4, 2);
        }
        public void Dispose() => _gate.Set();
    }

    /// <summary>
    /// The first inference after rest, on a machine too loaded to run the woken sampler before a short inference is
    /// over (here its read is held until the inference has ended): no reading lies inside the window or in the batch
    /// window before its end, as the last one was taken before the sampler rested. The meter waits for the sampler's
    /// next reading and charges the window that power above idle; before, the image got no energy (energy_mj null).
    /// </summary>
    [Fact]
    public async Task The_first_inference_after_rest_is_charged_by_the_reading_after_it_when_none_came_before_its_end()
    {
        var sensor = new HeldSensor();
        using var meter = new EnergyMeter(sensor, TimeSpan.FromMilliseconds(1), idleSamples: 5, restPeriod: TimeSpan.FromSeconds(30));
        meter.Start();
        await TestEnv.WaitUntil(() => meter.IdleWatts is not null, TimeSpan.FromSeconds(10), "the idle baseline");
        Assert.Equal(2.0, meter.IdleWatts);
        // At rest past a batch window: the last reading is older than any window from here on.
        await Task.Delay(meter.BatchWindow * 2);

        sensor.Hold();
        sensor.Busy = true;
        meter.BeginWork();
        long start = meter.BeginInference();
        Thread.Sleep(5);
        long end = Stopwatch.GetTimestamp();
        Task<double?> charged = Task.Run(() => meter.EndInference(start, end));
        sensor.Release();
        double? energy = await charged;
        meter.EndWork();

        Assert.NotNull(energy);
        // 1 W above idle over the window: its length in milliseconds, in millijoules.
        Assert.Equal((end - start) * 1000.0 / Stopwatch.Frequency, energy.Value, 6);
    }

    /// <summary>
    /// A stop ends the sampler in its wait: a failing sensor's pause (5 s with a 1 min period) and a working sensor's
    /// period (1 min). The sampler slept them out, and Dispose waited for it; here Dispose returns with the sampler thread
    /// ended after the one read it made.
    /// </summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Disposing_the_meter_ends_the_sampler_in_its_wait(bool broken)
    {
        var sensor = new FlakySensor { Broken = broken };
        var meter = new EnergyMeter(sensor, TimeSpan.FromMinutes(1), idleSamples: 1);
        meter.Start();
        Assert.True(sensor.WasRead.Wait(TimeSpan.FromSeconds(30)), "the sampler's first read");
        meter.Dispose();
        Assert.False(sensor.Reader!.IsAlive, "the sampler thread outlived Dispose");
        Assert.Equal(1, sensor.Reads);
    }

    /// <summary>
    /// A sensor that fails from its first read is reported from that read on: the sampler starts only when asked, after
    /// the handlers are attached. Started by the constructor, it could fail its first read before they were, and the
    /// first report came at the 10th failure.
    /// </summary>
    [Fact]
    public void A_sensor_that_stops_answering_is_reported_sparingly_and_the_sampler_lives_on()
    {
        var sensor = new FlakySensor();
        using var meter = new EnergyMeter(sensor, TimeSpan.FromMilliseconds(1), idleSamples: 1, steadyAfter: TimeSpan.FromMilliseconds(100));
        var reported = new System.Collections.Concurrent.ConcurrentQueue<(string Message, long InARow)>();
        long recovered = 0;
        meter.ReadFailed += (e, n) => reported.Enqueue((e.Message, n));
        meter.ReadRecovered += n => Interlocked.Exchange(ref recovered, n);
        Assert.Equal(0, sensor.Reads);   // nothing read before Start
        meter.Start();
        var sw = Stopwatch.StartNew();
        // The sampler counts a failure before it reports it: wait for the 10th report too.
        while ((Interlocked.Read(ref meter.Failures) < 10 || !reported.Any(r => r.InARow == 10)) && sw.Elapsed < TimeSpan.FromSeconds(10)) Thread.Sleep(10);

        // An I2C driver's IOException used to end the sampler thread, and with it the daemon.
        Assert.True(meter.Failures >= 10, $"{meter.Failures} failures");
        // Reported at the 1st, 10th, 100th ... failure in a row.
        Assert.Equal(1, reported.First().InARow);
        Assert.Contains(reported, r => r.InARow == 10);
        Assert.All(reported, r => Assert.Contains(r.InARow, (long[])[1, 10, 100]));
        Assert.Contains("IOException: Error 121", reported.Last().Message);

        sensor.Broken = false;
        while (Interlocked.Read(ref recovered) == 0 && sw.Elapsed < TimeSpan.FromSeconds(20)) Thread.Sleep(10);
        Assert.True(recovered >= 10, $"recovered after {recovered}");
        Assert.Equal(2.0, meter.Last!.Value.PowerWatts);
    }
}
