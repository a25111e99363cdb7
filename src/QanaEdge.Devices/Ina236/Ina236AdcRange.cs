namespace QanaEdge.Devices.Ina236;

/// <summary>
/// The INA236's two shunt input ranges, chosen by ADCRANGE (CONFIG bit 12; datasheet SBOSA81 8.1.1). The value of each
/// member is that bit.
/// </summary>
public enum Ina236AdcRange
{
    /// <summary>ADCRANGE = 0, the reset value: ±81.92 mV full scale in 2.5 µV steps.</summary>
    Wide = 0,
    /// <summary>ADCRANGE = 1: ±20.48 mV full scale in 625 nV steps, four times finer.</summary>
    Narrow = 1,
}
