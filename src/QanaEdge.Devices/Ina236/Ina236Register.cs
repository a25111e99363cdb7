namespace QanaEdge.Devices.Ina236;

/// <summary>INA236 register addresses (TI datasheet SBOSA81, section 7.6).</summary>
internal enum Ina236Register : byte
{
    /// <summary>Configuration; reset value 0x4127; bit 15 resets, bit 12 ADCRANGE (0: ±81.92 mV, 1: ±20.48 mV).</summary>
    Configuration = 0x00,
    /// <summary>Shunt voltage, two's complement; LSB 2.5 µV (ADCRANGE 0) or 625 nV (ADCRANGE 1).</summary>
    ShuntVoltage = 0x01,
    /// <summary>Bus voltage, unsigned, LSB 1.6 mV.</summary>
    BusVoltage = 0x02,
    /// <summary>Power, unsigned, LSB = 32 × current LSB.</summary>
    Power = 0x03,
    /// <summary>Current, two's complement, LSB set by SHUNT_CAL.</summary>
    Current = 0x04,
    /// <summary>
    /// SHUNT_CAL in bits 14..0 (bit 15 reserved): 0.00512 / (current LSB × R_shunt) with ADCRANGE 0, divided by 4 with
    /// ADCRANGE 1 (datasheet 8.1.2), since the shunt register then counts 625 nV steps, four per 2.5 µV.
    /// </summary>
    Calibration = 0x05,
    MaskEnable = 0x06,
    AlertLimit = 0x07,
    /// <summary>Reads 0x5449 ("TI").</summary>
    ManufacturerId = 0x3E,
    /// <summary>Reads 0xA080 (bits 15..4 0xA08 = INA236, bits 3..0 revision).</summary>
    DeviceId = 0x3F,
}
