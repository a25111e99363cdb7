using System.Device.I2c;
using QanaEdge.Devices.Power;
using UpstreamIna219 = Iot.Device.Adc.Ina219;

namespace QanaEdge.Devices.Ina219;

/// <summary>
/// INA219 high-side current/power monitor on I2C, through the Iot.Device.Bindings driver, which calibrates the chip
/// but leaves its configuration as it finds it: the configuration is written here (<see cref="Configuration"/>). The
/// signed registers (shunt voltage, current)
/// are decoded here as two's complement because the upstream read path goes through an unsigned 16-bit
/// register value, so a reverse current would read as a huge positive one (0xFFFF must be −1 LSB).
/// </summary>
public sealed class Ina219PowerSensor : IPowerSensor
{
    /// <summary>
    /// Full scale of the shunt input at PGA gain /8: ±320 mV (datasheet table "PG Bit Settings"), 32000 steps of 10 µV in
    /// the shunt voltage register. The register's 16 bits would hold 32767 steps, but the input clips at 320 mV, so a
    /// range up to 327.68 mV read currents above 320 mV / R as that, without an error.
    /// </summary>
    private const int MaxShuntSteps = 32000;
    private const double ShuntLsbVolts = 10e-6;
    private const double BusLsbVolts = 4e-3;
    /// <summary>The largest calibration value: 16 bits with bit 0 fixed at zero.</summary>
    public const ushort MaxCalibration = 0xFFFE;

    /// <summary>
    /// Configuration register value written at start: 32 V bus range, PGA /8 (±320 mV), 12-bit shunt and bus ADCs,
    /// shunt and bus continuous (the power-on value, datasheet 8.6.2.1). The range check and <see cref="UpdateInterval"/>
    /// assume it; a chip another program left at PGA /1 (±40 mV) would clip currents, or in power-down stop converting,
    /// with no error.
    /// </summary>
    public const ushort Configuration = 0x399F;

    private readonly UpstreamIna219 _chip;
    private readonly I2cDevice _device;
    private readonly double _currentLsbAmps;
    private readonly double _shuntOhms;
    private readonly ushort _calibration;
    private int _reads;

    /// <summary>
    /// Reads between checks of the calibration register: a brown-out resets the chip, its calibration to 0, and the
    /// current to 0 A from then on with no error (0.5 s at the daemon's 2 ms sampling).
    /// </summary>
    public const int CalibrationCheckEvery = 256;

    /// <param name="device">The chip's I2C device (address 0x40..0x4F). Owned by this sensor.</param>
    /// <param name="shuntOhms">Value of the shunt resistor.</param>
    /// <param name="maxCurrentAmps">Largest expected current; sets the current LSB (<see cref="Calibrate"/>).</param>
    public Ina219PowerSensor(I2cDevice device, double shuntOhms, double maxCurrentAmps)
    {
        ArgumentNullException.ThrowIfNull(device);
        if (!(shuntOhms > 0)) throw new PowerSensorException($"INA219: shunt resistance must be positive (got {shuntOhms} Ω)");
        if (!(maxCurrentAmps > 0)) throw new PowerSensorException($"INA219: maximum current must be positive (got {maxCurrentAmps} A)");
        double shuntVolts = maxCurrentAmps * shuntOhms;
        // Compared in steps rounded to a millionth of one: 3.2 A × 0.1 Ω, the full scale exactly, is 0.32000000000000006
        // in binary floating point.
        if (Math.Round(shuntVolts / ShuntLsbVolts, 6) > MaxShuntSteps)
            throw new PowerSensorException(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"INA219: {maxCurrentAmps} A through {shuntOhms} Ω is {shuntVolts * 1000:0.###} mV, beyond the shunt input's ±320 mV (PGA /8); currents above {MaxShuntSteps * ShuntLsbVolts / shuntOhms:0.###} A would read clipped (set Qana:Power:ShuntOhms and MaxCurrentAmps for this board)"));
        // Below one step of the shunt ADC every current up to the maximum reads 0: nothing to log.
        if (shuntVolts < ShuntLsbVolts)
            throw new PowerSensorException(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"INA219: {maxCurrentAmps} A through {shuntOhms} Ω is {shuntVolts * 1e6:0.###} µV, under one step of the shunt input ({ShuntLsbVolts * 1e6:0.##} µV); no current up to the maximum could be measured (set Qana:Power:ShuntOhms and MaxCurrentAmps for this board)"));
        _shuntOhms = shuntOhms;
        _device = device;
        (ushort calibration, _currentLsbAmps) = Calibrate(shuntOhms, maxCurrentAmps);
        Name = $"ina219@i2c-{device.ConnectionSettings.BusId}:0x{device.ConnectionSettings.DeviceAddress:X2}";
        _chip = new UpstreamIna219(device);
        device.Write([0x00, Configuration >> 8, Configuration & 0xFF]);
        _calibration = calibration;
        _chip.SetCalibration(calibration, (float)_currentLsbAmps);
        Calibration = string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"PGA /8 (shunt input ±320 mV in 10 µV steps), calibration {calibration}, current LSB {_currentLsbAmps * 1e6:0.####} µA");
    }

    /// <summary>
    /// The calibration value and the current LSB it gives. The datasheet's procedure (8.5.1): the finest LSB is
    /// Imax / 2^15 (step 2), Cal = trunc(0.04096 / (Current_LSB × R_shunt)) (equation 1), and any larger LSB is allowed.
    /// With Imax × R under 20.48 mV that Cal exceeds the register, so the sensor takes the finest LSB that fits,
    /// 0.04096 / (0xFFFE × R): a small shunt keeps logging instead of being refused. It costs no measurement: the
    /// current register is shunt × Cal / 4096 (equation 4), so one 10 µV step of the shunt ADC is still about 16 current
    /// LSBs. Bit 0 of the register is fixed at zero, so the chip works with the even value; the LSB is computed from it.
    /// (The ±320 mV check keeps Cal at 4194 or more: 0.04096 × 2^15 / 320 mV = 4194.304.)
    /// </summary>
    public static (ushort Calibration, double CurrentLsbAmps) Calibrate(double shuntOhms, double maxCurrentAmps)
    {
        double minimumLsb = maxCurrentAmps / 32768;
        double exact = 0.04096 / (minimumLsb * shuntOhms);
        ushort calibration = exact >= MaxCalibration ? MaxCalibration : (ushort)((int)exact & 0xFFFE);
        return (calibration, 0.04096 / (calibration * shuntOhms));
    }

    public string Name { get; }

    /// <summary>12-bit conversions of shunt and bus: 532 µs each (datasheet table 8-5, default mode).</summary>
    public TimeSpan UpdateInterval { get; } = TimeSpan.FromMicroseconds(2 * 532);

    /// <summary>Current LSB of the calibration value written (<see cref="Calibrate"/>).</summary>
    public double CurrentLsbAmps => _currentLsbAmps;

    /// <summary>Range, calibration value and current LSB, e.g. "PGA /8 (shunt input ±320 mV in 10 µV steps), calibration 4472, current LSB 18.3184 µA" for 0.5 Ω and 0.6 A.</summary>
    public string Calibration { get; }

    public PowerReading Read()
    {
        // The count moves on only past a check that completed: a brown-out often fails a transfer too, and a check
        // lost to it was otherwise skipped for a whole period while the reset chip read 0 A without an error.
        if (_reads % CalibrationCheckEvery == 0)
        {
            ushort now = ReadRaw(Ina219Register.Calibration);
            if (now != _calibration)
            {
                _chip.SetCalibration(_calibration, (float)_currentLsbAmps);
                throw new PowerSensorException($"{Name}: calibration register read 0x{now:X4} instead of 0x{_calibration:X4} (the chip was reset, a brown-out?); written again");
            }
        }
        _reads++;
        ushort busRaw = ReadRaw(Ina219Register.BusVoltage);
        if ((busRaw & 0x1) != 0)
            throw new PowerSensorException($"{Name}: math overflow (OVF): current or power out of range for the calibration");
        double bus = (busRaw >> 3) * BusLsbVolts;
        short currentRaw = unchecked((short)ReadRaw(Ina219Register.Current));
        double current = currentRaw * _currentLsbAmps;
        // P = V_bus × I: computed from the signed current so a reverse current gives negative power
        // (the chip's power register is unsigned and loses the sign).
        return new PowerReading(bus, current, bus * current);
    }

    /// <summary>The shunt voltage in volts, two's complement decoded (10 µV LSB).</summary>
    public double ReadShuntVolts()
        => unchecked((short)ReadRaw(Ina219Register.ShuntVoltage)) * ShuntLsbVolts;

    /// <summary>The current derived from the shunt voltage alone (does not depend on the calibration register).</summary>
    public double ReadCurrentFromShunt() => ReadShuntVolts() / _shuntOhms;

    /// <summary>Register access goes straight to the I2C device (pointer write, two-byte big-endian read):
    /// the upstream read path is internal and decodes unsigned.</summary>
    private ushort ReadRaw(Ina219Register register)
    {
        Span<byte> buffer = stackalloc byte[2];
        _device.WriteRead([(byte)register], buffer);
        return (ushort)((buffer[0] << 8) | buffer[1]);
    }

    public void Dispose()
    {
        _chip.Dispose();
        _device.Dispose(); // the upstream binding does not own the device; this sensor does
    }
}
