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
                PowerSensorKind.Ina219 => new Ina219PowerSensor(I2cDevice.Create(new I2cConnectionSettings(o.I2cBus, o.I2cAddress)), o.ShuntOhms, o.MaxCurrentAmps),
                PowerSensorKind.Ina236 => new Ina236PowerSensor(I2cDevice.Create(new I2cConnectionSettings(o.I2cBus, o.I2cAddress)), o.ShuntOhms, o.MaxCurrentAmps),
                PowerSensorKind.Hwmon => HwmonPowerSensor.Open(o.HwmonRoot, o.HwmonChip, o.HwmonChannel),
                _ => null,
            };
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or PlatformNotSupportedException or ArgumentException)
        {
            throw new PowerSensorException($"power sensor {o.Sensor} on i2c-{o.I2cBus}:0x{o.I2cAddress:X2}: {e.Message}", e);
        }
    }
}
