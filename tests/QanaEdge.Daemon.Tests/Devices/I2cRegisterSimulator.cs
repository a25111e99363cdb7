using System.Device.I2c;

namespace QanaEdge.Daemon.Tests.Devices;

/// <summary>
/// An I2C device of 16-bit big-endian registers behind a pointer register, the way TI's INA2xx parts talk: a write of
/// one byte sets the pointer, a write of three bytes sets pointer and register, a read returns the pointed register.
/// Subclasses model the chip (<see cref="OnWrite"/>, <see cref="OnRead"/>).
/// </summary>
public abstract class I2cRegisterSimulator(int busId, int address) : I2cDevice
{
    protected readonly Dictionary<byte, ushort> Registers = [];
    private byte _pointer;

    public override I2cConnectionSettings ConnectionSettings { get; } = new(busId, address);
    public int Transactions { get; private set; }

    /// <summary>
    /// The next this many transfers fail as a NAK'd transfer does on Linux (EREMOTEIO, which the binding's I2cDevice
    /// throws as an IOException): a brown-out or a loose wire.
    /// </summary>
    public int FailNext { get; set; }

    private void Transfer()
    {
        if (FailNext > 0)
        {
            FailNext--;
            throw new IOException("Error 121 performing I2C data transfer.");
        }
        Transactions++;
    }

    protected virtual void OnWrite(byte register, ushort value) => Registers[register] = value;
    protected virtual ushort OnRead(byte register) => Registers.TryGetValue(register, out ushort v) ? v : (ushort)0;

    public override byte ReadByte() => throw new NotSupportedException("INA2xx registers are 16 bits");
    public override void WriteByte(byte value) { Transfer(); _pointer = value; }

    public override void Read(Span<byte> buffer)
    {
        Transfer();
        ushort v = OnRead(_pointer);
        if (buffer.Length >= 1) buffer[0] = (byte)(v >> 8);
        if (buffer.Length >= 2) buffer[1] = (byte)v;
    }

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        Transfer();
        if (buffer.Length == 0) return;
        _pointer = buffer[0];
        if (buffer.Length >= 3) OnWrite(_pointer, (ushort)((buffer[1] << 8) | buffer[2]));
    }

    public override void WriteRead(ReadOnlySpan<byte> writeBuffer, Span<byte> readBuffer)
    {
        Write(writeBuffer);
        Read(readBuffer);
    }
}
