using System.Device.I2c;
using QanaEdge.Devices.Power;
using UnitsNet;
using UpstreamIna236 = Iot.Device.Adc.Ina236;

namespace QanaEdge.Devices.Ina236;

/// <summary>
/// INA236 16-bit current/power monitor on I2C, through the Iot.Device.Bindings driver (which resets the chip,
/// checks its id and programs SHUNT_CAL). Current and shunt voltage are decoded here from the raw registers as
/// two's complement so that a reverse current reads negative (0xFFFF is −1 LSB).
/// </summary>
public sealed class Ina236PowerSensor : IPowerSensor
{
    private const double BusLsbVolts = 1.6e-3;
    private UpstreamIna236 _chip;
    private readonly I2cDevice _device;
    private readonly double _currentLsbAmps;
    private readonly double _shuntOhms, _maxCurrentAmps;
    private readonly int _shuntCal;
    private int _reads;

    /// <summary>Reads between checks of SHUNT_CAL, which a brown-out resets to 0 (and the current with it).</summary>
    public const int CalibrationCheckEvery = 256;

    /// <param name="device">The chip's I2C device (address 0x40..0x4B). Owned by this sensor.</param>
    /// <param name="shuntOhms">Value of the shunt resistor.</param>
    /// <param name="maxCurrentAmps">Largest expected current; the binding derives the current LSB from it.</param>
    public Ina236PowerSensor(I2cDevice device, double shuntOhms, double maxCurrentAmps)
    {
        ArgumentNullException.ThrowIfNull(device);
        if (!(shuntOhms > 0)) throw new PowerSensorException($"INA236: shunt resistance must be positive (got {shuntOhms} Ω)");
        if (!(maxCurrentAmps > 0)) throw new PowerSensorException($"INA236: maximum current must be positive (got {maxCurrentAmps} A)");
        _device = device;
        ushort id = ReadRaw(Ina236Register.ManufacturerId);
        if (id != 0x5449)
            throw new PowerSensorException($"INA236 at 0x{device.ConnectionSettings.DeviceAddress:X2}: manufacturer id 0x{id:X4}, expected 0x5449");
        Name = $"ina236@i2c-{device.ConnectionSettings.BusId}:0x{device.ConnectionSettings.DeviceAddress:X2}";
        _chip = new UpstreamIna236(device, ElectricResistance.FromOhms(shuntOhms), ElectricCurrent.FromAmperes(maxCurrentAmps));
        // Decode with the current LSB the chip was actually programmed for (the binding picks its own LSB):
        // datasheet equation 1, SHUNT_CAL = 0.00512 / (Current_LSB × R_shunt), SHUNT_CAL divided by 4 when ADCRANGE = 1.
        int shuntCal = ReadRaw(Ina236Register.Calibration) & 0x7FFF;
        if (shuntCal == 0) throw new PowerSensorException($"{Name}: SHUNT_CAL reads 0 after initialisation; the chip did not take the calibration");
        _shuntCal = shuntCal;
        _shuntOhms = shuntOhms;
        _maxCurrentAmps = maxCurrentAmps;
        bool lowRange = (ReadRaw(Ina236Register.Configuration) & (1 << 12)) != 0;
        _currentLsbAmps = 0.00512 / (shuntCal * (lowRange ? 4 : 1) * shuntOhms);
        // The shunt ADC reads ±81.92 mV (±20.48 mV with ADCRANGE = 1; datasheet 7.6): beyond it every current reads as
        // the full scale, so power and energy would come out too low without any error.
        double fullScaleVolts = lowRange ? 0.02048 : 0.08192;
        if (maxCurrentAmps * shuntOhms > fullScaleVolts)
            throw new PowerSensorException(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"{Name}: {maxCurrentAmps} A through {shuntOhms} Ω is {maxCurrentAmps * shuntOhms * 1000:0.##} mV, beyond the shunt input's ±{fullScaleVolts * 1000:0.##} mV; currents above {fullScaleVolts / shuntOhms:0.###} A would read clipped (set Qana:Power:ShuntOhms and MaxCurrentAmps for this board)"));
    }

    public string Name { get; }

    /// <summary>Bus and shunt conversions of 1.1 ms each, no averaging (the reset configuration).</summary>
    public TimeSpan UpdateInterval { get; } = TimeSpan.FromMicroseconds(2 * 1100);

    public double CurrentLsbAmps => _currentLsbAmps;

    public PowerReading Read()
    {
        if (_reads++ % CalibrationCheckEvery == 0)
        {
            int now = ReadRaw(Ina236Register.Calibration) & 0x7FFF;
            if (now != _shuntCal)
            {
                // Reset (a brown-out?): the binding programs configuration and SHUNT_CAL again, as at start.
                _chip = new UpstreamIna236(_device, ElectricResistance.FromOhms(_shuntOhms), ElectricCurrent.FromAmperes(_maxCurrentAmps));
                throw new PowerSensorException($"{Name}: SHUNT_CAL read 0x{now:X4} instead of 0x{_shuntCal:X4} (the chip was reset, a brown-out?); programmed again");
            }
        }
        double bus = ReadRaw(Ina236Register.BusVoltage) * BusLsbVolts;
        double current = unchecked((short)ReadRaw(Ina236Register.Current)) * _currentLsbAmps;
        return new PowerReading(bus, current, bus * current);
    }

    /// <summary>Shunt voltage in volts, two's complement decoded, for the ADC range in the configuration register.</summary>
    public double ReadShuntVolts()
    {
        bool lowRange = (ReadRaw(Ina236Register.Configuration) & (1 << 12)) != 0;
        return unchecked((short)ReadRaw(Ina236Register.ShuntVoltage)) * (lowRange ? 625e-9 : 2.5e-6);
    }

    /// <summary>Register access goes straight to the I2C device: pointer write, two-byte big-endian read.</summary>
    private ushort ReadRaw(Ina236Register register)
    {
        Span<byte> buffer = stackalloc byte[2];
        _device.WriteRead([(byte)register], buffer);
        return (ushort)((buffer[0] << 8) | buffer[1]);
    }

    public void Dispose() => _chip?.Dispose();
}
