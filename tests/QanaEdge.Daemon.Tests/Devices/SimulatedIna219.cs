namespace QanaEdge.Daemon.Tests.Devices;

/// <summary>
/// INA219 per datasheet SBOS448: configuration resets to 0x399F (bit 15 resets all registers), the shunt voltage
/// register is two's complement with a 10 µV LSB, the bus register holds the voltage in bits 15..3 (4 mV LSB) with CNVR
/// in bit 1, and the chip derives current = shunt × cal / 4096 and power = current × bus / 5000 (equations 4 and 5) once
/// calibration is written; the calibration register's bit 0 always reads 0.
/// </summary>
public sealed class SimulatedIna219(int address = 0x40) : I2cRegisterSimulator(1, address)
{
    /// <summary>The raw shunt-voltage register the "analog front end" presents (two's complement).</summary>
    public short ShuntRaw { get; set; }
    /// <summary>Bus voltage in 4 mV steps.</summary>
    public int BusSteps { get; set; }

    public ushort Calibration => Registers.TryGetValue(0x05, out ushort c) ? c : (ushort)0;

    protected override void OnWrite(byte register, ushort value)
    {
        switch (register)
        {
            case 0x00 when (value & 0x8000) != 0: Registers.Clear(); Registers[0x00] = 0x399F; break;
            case 0x00: Registers[0x00] = (ushort)(value & 0x7FFF); break;
            case 0x05: Registers[0x05] = (ushort)(value & 0xFFFE); break;
            case 0x01 or 0x02 or 0x03 or 0x04: break; // read-only
            default: Registers[register] = value; break;
        }
    }

    protected override ushort OnRead(byte register)
    {
        int current = Calibration == 0 ? 0 : ShuntRaw * Calibration / 4096;
        return register switch
        {
            0x00 => Registers.TryGetValue(0x00, out ushort c) ? c : (ushort)0x399F,
            0x01 => unchecked((ushort)ShuntRaw),
            0x02 => (ushort)((BusSteps << 3) | 0b10),
            0x03 => (ushort)Math.Abs(current * BusSteps / 5000),
            0x04 => unchecked((ushort)(short)current),
            _ => base.OnRead(register),
        };
    }

    /// <summary>A brown-out: every register back to its power-on value (calibration 0).</summary>
    public void Brownout() => Registers.Clear();
}
