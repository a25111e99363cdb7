namespace QanaEdge.Devices.Ina219;

/// <summary>INA219 register addresses (TI datasheet SBOS448G, table 8-4 "Register Set Summary").</summary>
internal enum Ina219Register : byte
{
    /// <summary>Configuration; reset value 0x399F; bit 15 resets the chip.</summary>
    Configuration = 0x00,
    /// <summary>Shunt voltage, two's complement, LSB 10 µV.</summary>
    ShuntVoltage = 0x01,
    /// <summary>Bus voltage in bits 15..3 (LSB 4 mV); bit 1 CNVR, bit 0 OVF.</summary>
    BusVoltage = 0x02,
    /// <summary>Power, unsigned, LSB = 20 × current LSB.</summary>
    Power = 0x03,
    /// <summary>Current, two's complement, LSB chosen by calibration.</summary>
    Current = 0x04,
    /// <summary>Calibration: Cal = trunc(0.04096 / (current LSB × R_shunt)); bit 0 is read-only zero.</summary>
    Calibration = 0x05,
}
