using System.Device.I2c;
using System.Globalization;
using QanaEdge.Devices.Power;

namespace QanaEdge.Devices.Ina236;

/// <summary>
/// INA236 16-bit current/power monitor on I2C. The chip is reset, identified and calibrated here, not through the
/// Iot.Device.Bindings driver: that driver picks twice the minimum current LSB and writes SHUNT_CAL unchecked into a
/// 15-bit field, so for a small Imax × R the value wrapped (bit 15 is dropped by the chip) or the driver threw.
/// Current and shunt voltage are decoded as two's complement so that a reverse current reads negative (0xFFFF is
/// −1 LSB).
/// </summary>
public sealed class Ina236PowerSensor : IPowerSensor
{
    private const double BusLsbVolts = 1.6e-3;
    /// <summary>Shunt ADC step with ADCRANGE = 0, the reset value the sensor leaves in place (datasheet 7.6).</summary>
    private const double ShuntLsbVolts = 2.5e-6;
    /// <summary>Shunt ADC full scale with ADCRANGE = 0: 32768 × 2.5 µV.</summary>
    private const double FullScaleVolts = 0.08192;
    /// <summary>Equation 1's internal scaling constant: SHUNT_CAL = 0.00512 / (Current_LSB × R_shunt).</summary>
    private const double CalibrationScale = 0.00512;
    /// <summary>SHUNT_CAL is bits 14..0 of register 05h; bit 15 is reserved and reads 0.</summary>
    public const int MaxShuntCal = 0x7FFF;

    private readonly I2cDevice _device;
    private readonly double _currentLsbAmps;
    private readonly int _shuntCal;
    private int _reads;

    /// <summary>Reads between checks of SHUNT_CAL, which a brown-out resets to 0 (and the current with it).</summary>
    public const int CalibrationCheckEvery = 256;

    /// <param name="device">The chip's I2C device (address 0x40..0x4B). Owned by this sensor.</param>
    /// <param name="shuntOhms">Value of the shunt resistor.</param>
    /// <param name="maxCurrentAmps">Largest expected current; sets the current LSB (<see cref="Calibrate"/>).</param>
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
        double shuntVolts = maxCurrentAmps * shuntOhms;
        // Beyond the shunt ADC's ±81.92 mV every current reads as the full scale, so power and energy would come out
        // too low without any error.
        if (shuntVolts > FullScaleVolts)
            throw new PowerSensorException(string.Create(CultureInfo.InvariantCulture,
                $"{Name}: {maxCurrentAmps} A through {shuntOhms} Ω is {shuntVolts * 1000:0.##} mV, beyond the shunt input's ±{FullScaleVolts * 1000:0.##} mV; currents above {FullScaleVolts / shuntOhms:0.###} A would read clipped (set Qana:Power:ShuntOhms and MaxCurrentAmps for this board)"));
        // Below one step of the shunt ADC every current up to the maximum reads 0: nothing to log.
        if (shuntVolts < ShuntLsbVolts)
            throw new PowerSensorException(string.Create(CultureInfo.InvariantCulture,
                $"{Name}: {maxCurrentAmps} A through {shuntOhms} Ω is {shuntVolts * 1e6:0.###} µV, under one step of the shunt input ({ShuntLsbVolts * 1e6:0.##} µV); no current up to the maximum could be measured (set Qana:Power:ShuntOhms and MaxCurrentAmps for this board)"));
        (_shuntCal, _currentLsbAmps) = Calibrate(shuntOhms, maxCurrentAmps);
        Initialise();
    }

    /// <summary>
    /// SHUNT_CAL and the current LSB it gives, for ADCRANGE = 0. The datasheet's procedure (8.1.2): the finest LSB is
    /// Imax / 2^15 (equation 2), SHUNT_CAL = 0.00512 / (Current_LSB × R_shunt) (equation 1), truncated so that the LSB
    /// it implies is no finer than that. With Imax × R under 5.12 mV that exceeds the 15-bit field; a power logger should
    /// keep logging, so SHUNT_CAL is then 0x7FFF, the finest LSB that fits (0.00512 / (0x7FFF × R), above Imax / 2^15).
    /// That costs no measurement: with the 2.5 µV shunt step, equation 1 makes the current register shunt × SHUNT_CAL /
    /// 2048, so at 0x7FFF one step of the shunt ADC is still about 16 current LSBs. (The full-scale check keeps SHUNT_CAL
    /// at 2048 or more, and the one-step check refuses what cannot be measured at all.)
    /// </summary>
    public static (int ShuntCal, double CurrentLsbAmps) Calibrate(double shuntOhms, double maxCurrentAmps)
    {
        double minimumLsb = maxCurrentAmps / 32768;
        double exact = CalibrationScale / (minimumLsb * shuntOhms);
        int shuntCal = exact >= MaxShuntCal ? MaxShuntCal : (int)exact;
        return (shuntCal, CalibrationScale / (shuntCal * shuntOhms));
    }

    public string Name { get; }

    /// <summary>Bus and shunt conversions of 1.1 ms each, no averaging (the reset configuration, 0x4127).</summary>
    public TimeSpan UpdateInterval { get; } = TimeSpan.FromMicroseconds(2 * 1100);

    /// <summary>The current LSB SHUNT_CAL gives (<see cref="Calibrate"/>).</summary>
    public double CurrentLsbAmps => _currentLsbAmps;

    /// <summary>The SHUNT_CAL value programmed into the chip.</summary>
    public int ShuntCal => _shuntCal;

    public PowerReading Read()
    {
        if (_reads++ % CalibrationCheckEvery == 0)
        {
            int now = ReadRaw(Ina236Register.Calibration) & MaxShuntCal;
            if (now != _shuntCal)
            {
                // Reset (a brown-out?): configuration and SHUNT_CAL are programmed again, as at start.
                Initialise();
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
        return unchecked((short)ReadRaw(Ina236Register.ShuntVoltage)) * (lowRange ? 625e-9 : ShuntLsbVolts);
    }

    /// <summary>
    /// Resets the chip (configuration back to 0x4127: ADCRANGE 0, 1.1 ms conversions, continuous), checks that it is an
    /// INA236, and programs SHUNT_CAL, read back so that a chip that did not take it fails here rather than reading 0 A.
    /// </summary>
    private void Initialise()
    {
        WriteRaw(Ina236Register.Configuration, 0x8000);
        ushort deviceId = ReadRaw(Ina236Register.DeviceId);
        if ((deviceId & 0xFFF0) != 0xA080)
            throw new PowerSensorException($"{Name}: device id 0x{deviceId:X4}, expected 0xA08x (INA236)");
        WriteRaw(Ina236Register.Calibration, (ushort)_shuntCal);
        int written = ReadRaw(Ina236Register.Calibration) & MaxShuntCal;
        if (written != _shuntCal)
            throw new PowerSensorException($"{Name}: SHUNT_CAL reads 0x{written:X4} after writing 0x{_shuntCal:X4}; the chip did not take the calibration");
    }

    /// <summary>Register access goes straight to the I2C device: pointer write, two-byte big-endian read.</summary>
    private ushort ReadRaw(Ina236Register register)
    {
        Span<byte> buffer = stackalloc byte[2];
        _device.WriteRead([(byte)register], buffer);
        return (ushort)((buffer[0] << 8) | buffer[1]);
    }

    /// <summary>Pointer and two bytes big-endian in one write.</summary>
    private void WriteRaw(Ina236Register register, ushort value)
        => _device.Write([(byte)register, (byte)(value >> 8), (byte)value]);

    public void Dispose() => _device.Dispose();
}
