namespace QanaEdge.Devices.Power;

/// <summary>One reading of a power rail: bus voltage, current (negative when the current flows backwards
/// through the shunt) and power, in SI units.</summary>
public readonly record struct PowerReading(double BusVolts, double CurrentAmps, double PowerWatts);

/// <summary>
/// A power monitor on the board's supply rail. Implementations are not thread-safe: one sampling loop owns
/// a sensor. <see cref="UpdateInterval"/> is how often the chip produces a new conversion; reading faster
/// than that returns the same value again, which is why energy is averaged over a batch window for slow
/// sensors (see <see cref="EnergyMeter"/>).
/// </summary>
public interface IPowerSensor : IDisposable
{
    /// <summary>Chip and connection, e.g. "ina219@i2c-1:0x40" or "ina226 (hwmon3)".</summary>
    string Name { get; }

    /// <summary>
    /// How the sensor set the chip up (input range, calibration), for the start-up log; empty for a sensor that sets
    /// nothing up or does not say.
    /// </summary>
    string Calibration => "";

    /// <summary>Time between two fresh conversions of the chip.</summary>
    TimeSpan UpdateInterval { get; }

    /// <summary>Reads the latest conversion. Throws <see cref="PowerSensorException"/> when the device does not answer sensibly.</summary>
    PowerReading Read();
}

/// <summary>A power sensor that is missing, misconfigured or returned something impossible.</summary>
public sealed class PowerSensorException(string message, Exception? inner = null) : Exception(message, inner);
