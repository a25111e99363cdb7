namespace QanaEdge.Daemon.Tests.Devices;

/// <summary>
/// INA236 per datasheet SBOSA81: configuration resets to 0x4127 (bit 15 resets), manufacturer id 0x5449 and device id
/// 0xA080 read-only; shunt voltage two's complement (2.5 µV LSB, 625 nV with ADCRANGE); bus voltage 1.6 mV LSB; the chip
/// derives current = shunt × SHUNT_CAL / 2048 (equation 2; with ADCRANGE 1 the user divides SHUNT_CAL by 4) and power = current × bus / 20000 (the power LSB is 32 × Current_LSB and the bus LSB 1.6 mV, so 1.6 mV / 32 = 1 / 20000).
/// </summary>
public sealed class SimulatedIna236(int address = 0x40) : I2cRegisterSimulator(1, address)
{
    public short ShuntRaw { get; set; }
    /// <summary>Bus voltage in 1.6 mV steps.</summary>
    public int BusSteps { get; set; }
    public int Resets { get; private set; }

    /// <summary>CONFIG as the chip holds it; bit 12 is ADCRANGE.</summary>
    public ushort Config => Registers.TryGetValue(0x00, out ushort c) ? c : (ushort)0x4127;
    public ushort ShuntCal => Registers.TryGetValue(0x05, out ushort c) ? c : (ushort)0;

    protected override void OnWrite(byte register, ushort value)
    {
        switch (register)
        {
            case 0x00 when (value & 0x8000) != 0: Registers.Clear(); Resets++; break;
            case 0x00: Registers[0x00] = (ushort)(value & 0x7FFF); break;
            case 0x05: Registers[0x05] = (ushort)(value & 0x7FFF); break;
            case 0x01 or 0x02 or 0x03 or 0x04 or 0x3E or 0x3F: break; // read-only
            default: Registers[register] = value; break;
        }
    }

    protected override ushort OnRead(byte register)
    {
        long current = (long)ShuntRaw * ShuntCal / 2048;
        current = Math.Clamp(current, short.MinValue, short.MaxValue);
        return register switch
        {
            0x00 => Config,
            0x01 => unchecked((ushort)ShuntRaw),
            0x02 => (ushort)BusSteps,
            0x03 => (ushort)Math.Min(0xFFFF, Math.Abs(current) * BusSteps / 20000),
            0x04 => unchecked((ushort)(short)current),
            0x3E => 0x5449,
            0x3F => 0xA080,
            _ => base.OnRead(register),
        };
    }

    /// <summary>A brown-out: every register back to its power-on value (calibration 0).</summary>
    public void Brownout() => Registers.Clear();
}
