using System.Device.I2c;
using QanaEdge.Daemon.Configuration;
using QanaEdge.Devices.Hwmon;
using QanaEdge.Devices.Ina219;
using QanaEdge.Devices.Ina236;
using QanaEdge.Devices.Power;

namespace QanaEdge.Daemon.Power;

/// <summary>Opens the configured power sensor, or none.</summary>
public static class PowerSetup
{
    public static IPowerSensor? Open(PowerOptions o)
    {
        try
        {
            return o.Sensor switch
            {
                PowerSensorKind.None => null,
                PowerSensorKind.Ina219 => OnI2c(o, device => new Ina219PowerSensor(device, o.ShuntOhms, o.MaxCurrentAmps)),
                PowerSensorKind.Ina236 => OnI2c(o, device => new Ina236PowerSensor(device, o.ShuntOhms, o.MaxCurrentAmps)),
                PowerSensorKind.Hwmon => HwmonPowerSensor.Open(o.HwmonRoot, o.HwmonChip, o.HwmonChannel),
                _ => null,
            };
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or PlatformNotSupportedException or ArgumentException)
        {
            throw new PowerSensorException($"power sensor {o.Sensor} {Where(o)}: {e.Message}", e);
        }
    }

    /// <summary>
    /// What the sensor's kind tried: an INA on its I2C bus and address, an hwmon chip and channel under its root (the
    /// kernel driver owns the bus there, and the I2C options are not used).
    /// </summary>
    private static string Where(PowerOptions o) => o.Sensor == PowerSensorKind.Hwmon
        ? $"'{o.HwmonChip}' channel {o.HwmonChannel} under {o.HwmonRoot}"
        : $"on i2c-{o.I2cBus}:0x{o.I2cAddress:X2}";

    /// <summary>
    /// Builds a sensor on the configured I2C device. A sensor owns its device once built; one that refuses the chip
    /// or the configuration never got it, so the device is closed here rather than left open until the process ends.
    /// </summary>
    private static IPowerSensor OnI2c(PowerOptions o, Func<I2cDevice, IPowerSensor> build)
    {
        I2cDevice device = I2cDevice.Create(new I2cConnectionSettings(o.I2cBus, o.I2cAddress));
        try { return build(device); }
        catch
        {
            device.Dispose();
            throw;
        }
    }
}
