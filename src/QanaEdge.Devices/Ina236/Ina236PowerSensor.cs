using System.Device.I2c;
using System.Globalization;
using QanaEdge.Devices.Power;

namespace QanaEdge.Devices.Ina236;

/// <summary>
/// INA236 16-bit current/power monitor on I2C. The chip is reset, identified and calibrated here, not through the
/// Iot.Device.Bindings driver: that driver picks twice the minimum current LSB and writes SHUNT_CAL unchecked into a
/// 15-bit field, so for a small Imax × R the value wrapped (bit 15 is dropped by the chip) or the driver threw.
/// Current and shunt voltage are decoded as two's complement so that a reverse current reads negative (0xFFFF is
/// −1 LSB). The shunt input range is chosen from Imax × R (<see cref="ChooseRange"/>): ±20.48 mV, in steps four times
/// finer than the reset range's, whenever that fits.
/// </summary>
public sealed class Ina236PowerSensor : IPowerSensor
{
    private const double BusLsbVolts = 1.6e-3;
    /// <summary>Shunt ADC step with ADCRANGE = 0 (datasheet 8.1.1).</summary>
    private const double WideShuntLsbVolts = 2.5e-6;
    /// <summary>Shunt ADC full scale with ADCRANGE = 0: 32768 × 2.5 µV.</summary>
    private const double WideFullScaleVolts = 0.08192;
    /// <summary>Shunt ADC step with ADCRANGE = 1.</summary>
    private const double NarrowShuntLsbVolts = 625e-9;
    /// <summary>Shunt ADC full scale with ADCRANGE = 1: 32768 × 625 nV.</summary>
    private const double NarrowFullScaleVolts = 0.02048;
    /// <summary>Equation 1's internal scaling constant: SHUNT_CAL = 0.00512 / (Current_LSB × R_shunt), for ADCRANGE = 0.</summary>
    private const double WideCalibrationScale = 0.00512;
    /// <summary>
    /// Equation 1's constant for ADCRANGE = 1, where the datasheet divides SHUNT_CAL by 4: 0.00512 / 4. Each constant
    /// is 2048 steps of its range's shunt ADC (2048 × 2.5 µV, 2048 × 625 nV), which is why the chip's current register
    /// is shunt × SHUNT_CAL / 2048 in both ranges.
    /// </summary>
    private const double NarrowCalibrationScale = 0.00128;
    /// <summary>SHUNT_CAL is bits 14..0 of register 05h; bit 15 is reserved and reads 0.</summary>
    public const int MaxShuntCal = 0x7FFF;
    /// <summary>
    /// CONFIG as reset (0x4127: 1.1 ms bus and shunt conversions, no averaging, continuous) without ADCRANGE; the sensor
    /// writes it with the chosen range in bit 12.
    /// </summary>
    private const ushort ResetConfiguration = 0x4127;
    private const int AdcRangeBit = 1 << 12;

    private readonly I2cDevice _device;
    private readonly Ina236AdcRange _range;
    private readonly double _currentLsbAmps;
    private readonly int _shuntCal;
    private int _reads;

    /// <summary>
    /// Reads between checks of SHUNT_CAL, which a brown-out resets to 0 (and the current with it), and of ADCRANGE, which
    /// it resets to 0 (currents would read 4 times off with the calibration for ADCRANGE 1).
    /// </summary>
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
        if (shuntVolts > WideFullScaleVolts)
            throw new PowerSensorException(string.Create(CultureInfo.InvariantCulture,
                $"{Name}: {maxCurrentAmps} A through {shuntOhms} Ω is {shuntVolts * 1000:0.##} mV, beyond the shunt input's ±{WideFullScaleVolts * 1000:0.##} mV; currents above {WideFullScaleVolts / shuntOhms:0.###} A would read clipped (set Qana:Power:ShuntOhms and MaxCurrentAmps for this board)"));
        // Below one step of the shunt ADC every current up to the maximum reads 0: nothing to log. The step is the
        // chosen range's, so only Imax × R under 625 nV, one step of the finer range, is refused.
        double shuntLsbVolts = ShuntLsbVolts(ChooseRange(shuntVolts));
        if (shuntVolts < shuntLsbVolts)
            throw new PowerSensorException(string.Create(CultureInfo.InvariantCulture,
                $"{Name}: {maxCurrentAmps} A through {shuntOhms} Ω is {shuntVolts * 1e6:0.###} µV, under one step of the shunt input ({shuntLsbVolts * 1e6:0.###} µV); no current up to the maximum could be measured (set Qana:Power:ShuntOhms and MaxCurrentAmps for this board)"));
        (_range, _shuntCal, _currentLsbAmps) = Calibrate(shuntOhms, maxCurrentAmps);
        Calibration = string.Create(CultureInfo.InvariantCulture,
            $"ADCRANGE {(int)_range} (shunt input ±{FullScaleVolts(_range) * 1000:0.##} mV in {ShuntLsbVolts(_range) * 1e6:0.###} µV steps), SHUNT_CAL {_shuntCal}, current LSB {_currentLsbAmps * 1e6:0.####} µA");
        Initialise();
    }

    /// <summary>
    /// The shunt input range for a largest shunt voltage of Imax × R: ADCRANGE = 1 (±20.48 mV) when that fits, since its
    /// 625 nV step is four times finer, else ADCRANGE = 0 (±81.92 mV). No margin, as for the ±81.92 mV check: at
    /// exactly 20.48 mV the shunt register holds its largest value, 32767, one step short, so Imax reads one step low.
    /// </summary>
    public static Ina236AdcRange ChooseRange(double maxShuntVolts)
        => maxShuntVolts <= NarrowFullScaleVolts ? Ina236AdcRange.Narrow : Ina236AdcRange.Wide;

    /// <summary>One step of the shunt ADC in the given range.</summary>
    private static double ShuntLsbVolts(Ina236AdcRange range)
        => range == Ina236AdcRange.Narrow ? NarrowShuntLsbVolts : WideShuntLsbVolts;

    /// <summary>Full scale of the shunt ADC in the given range.</summary>
    private static double FullScaleVolts(Ina236AdcRange range)
        => range == Ina236AdcRange.Narrow ? NarrowFullScaleVolts : WideFullScaleVolts;

    /// <summary>
    /// The shunt input range (<see cref="ChooseRange"/>), SHUNT_CAL and the current LSB it gives. The datasheet's
    /// procedure (8.1.2): the finest LSB is Imax / 2^15 (equation 2), SHUNT_CAL = 0.00512 / (Current_LSB × R_shunt)
    /// (equation 1), divided by 4 with ADCRANGE = 1, truncated so that the LSB it implies is no finer than that. With
    /// Imax × R under 1.28 mV (ADCRANGE = 1; it would be 5.12 mV with ADCRANGE = 0) that exceeds the 15-bit field; a
    /// power logger should keep logging, so SHUNT_CAL is then 0x7FFF, the finest LSB that fits (0.00128 / (0x7FFF × R),
    /// above Imax / 2^15). That costs no measurement: equation 1 makes the current register shunt × SHUNT_CAL / 2048 in
    /// either range, so at 0x7FFF one step of the shunt ADC is still about 16 current LSBs. (Each range's full scale
    /// keeps SHUNT_CAL at 2048 or more, and the one-step check refuses what cannot be measured at all.)
    /// </summary>
    public static (Ina236AdcRange Range, int ShuntCal, double CurrentLsbAmps) Calibrate(double shuntOhms, double maxCurrentAmps)
    {
        Ina236AdcRange range = ChooseRange(maxCurrentAmps * shuntOhms);
        double scale = range == Ina236AdcRange.Narrow ? NarrowCalibrationScale : WideCalibrationScale;
        double minimumLsb = maxCurrentAmps / 32768;
        double exact = scale / (minimumLsb * shuntOhms);
        int shuntCal = exact >= MaxShuntCal ? MaxShuntCal : (int)exact;
        return (range, shuntCal, scale / (shuntCal * shuntOhms));
    }

    public string Name { get; }

    /// <summary>Bus and shunt conversions of 1.1 ms each, no averaging (the reset configuration, 0x4127).</summary>
    public TimeSpan UpdateInterval { get; } = TimeSpan.FromMicroseconds(2 * 1100);

    /// <summary>The current LSB SHUNT_CAL gives (<see cref="Calibrate"/>).</summary>
    public double CurrentLsbAmps => _currentLsbAmps;

    /// <summary>The SHUNT_CAL value programmed into the chip.</summary>
    public int ShuntCal => _shuntCal;

    /// <summary>The shunt input range programmed into the chip (ADCRANGE).</summary>
    public Ina236AdcRange AdcRange => _range;

    /// <summary>Range, SHUNT_CAL and current LSB, e.g. "ADCRANGE 1 (shunt input ±20.48 mV in 0.625 µV steps), SHUNT_CAL 2048, current LSB 6.25 µA".</summary>
    public string Calibration { get; }

    public PowerReading Read()
    {
        // The count moves on only past a check that completed: a brown-out often fails a transfer too, and a check
        // lost to it was otherwise skipped for a whole period while the reset chip read 0 A without an error.
        if (_reads % CalibrationCheckEvery == 0)
        {
            int now = ReadRaw(Ina236Register.Calibration) & MaxShuntCal;
            // SHUNT_CAL was computed for the programmed range: in the other range every current reads 4 times off.
            Ina236AdcRange range = RangeIn(ReadRaw(Ina236Register.Configuration));
            if (now != _shuntCal || range != _range)
            {
                // Reset (a brown-out?): configuration and SHUNT_CAL are programmed again, as at start.
                Initialise();
                throw new PowerSensorException($"{Name}: SHUNT_CAL read 0x{now:X4} with ADCRANGE {(int)range} instead of 0x{_shuntCal:X4} with ADCRANGE {(int)_range} (the chip was reset, a brown-out, or reconfigured?); programmed again");
            }
        }
        _reads++;
        double bus = ReadRaw(Ina236Register.BusVoltage) * BusLsbVolts;
        double current = unchecked((short)ReadRaw(Ina236Register.Current)) * _currentLsbAmps;
        return new PowerReading(bus, current, bus * current);
    }

    /// <summary>
    /// Shunt voltage in volts, two's complement decoded, for the ADC range in the configuration register: the one the
    /// sensor programmed, unless the chip was reset since (which the next calibration check in <see cref="Read"/> finds).
    /// </summary>
    public double ReadShuntVolts()
    {
        Ina236AdcRange range = RangeIn(ReadRaw(Ina236Register.Configuration));
        return unchecked((short)ReadRaw(Ina236Register.ShuntVoltage)) * ShuntLsbVolts(range);
    }

    private static Ina236AdcRange RangeIn(ushort configuration)
        => (configuration & AdcRangeBit) != 0 ? Ina236AdcRange.Narrow : Ina236AdcRange.Wide;

    /// <summary>
    /// Resets the chip (configuration back to 0x4127: ADCRANGE 0, 1.1 ms conversions, continuous), checks that it is an
    /// INA236, writes the configuration with the chosen ADCRANGE, and programs SHUNT_CAL. Both are read back so that a
    /// chip that did not take them fails here rather than reading 0 A or currents 4 times off.
    /// </summary>
    private void Initialise()
    {
        WriteRaw(Ina236Register.Configuration, 0x8000);
        ushort deviceId = ReadRaw(Ina236Register.DeviceId);
        if ((deviceId & 0xFFF0) != 0xA080)
            throw new PowerSensorException($"{Name}: device id 0x{deviceId:X4}, expected 0xA08x (INA236)");
        ushort configuration = (ushort)(ResetConfiguration | (_range == Ina236AdcRange.Narrow ? AdcRangeBit : 0));
        WriteRaw(Ina236Register.Configuration, configuration);
        ushort configurationRead = ReadRaw(Ina236Register.Configuration);
        if (RangeIn(configurationRead) != _range)
            throw new PowerSensorException($"{Name}: CONFIG reads 0x{configurationRead:X4} after writing 0x{configuration:X4}; the chip did not take the shunt input range");
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
