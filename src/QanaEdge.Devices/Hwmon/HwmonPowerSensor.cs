using System.Globalization;
using QanaEdge.Devices.Power;

namespace QanaEdge.Devices.Hwmon;

/// <summary>
/// An INA226 or INA3221 channel read through the Linux hwmon sysfs interface (drivers ina2xx and ina3221).
/// The kernel driver owns the I2C bus; we only read its attribute files, in the hwmon ABI's units:
/// in*_input millivolts, curr*_input milliamperes, power*_input microwatts, update_interval milliseconds.
/// </summary>
public sealed class HwmonPowerSensor : IPowerSensor
{
    public const string DefaultRoot = "/sys/class/hwmon";

    private readonly string _busFile;
    private readonly string _currentFile;
    private readonly string? _powerFile;

    private HwmonPowerSensor(string directory, string chip, int channel, TimeSpan updateInterval)
    {
        Directory = directory;
        UpdateInterval = updateInterval;
        Name = $"{chip} ({Path.GetFileName(directory)}, channel {channel})";
        _busFile = Path.Combine(directory, $"in{channel}_input");
        _currentFile = Path.Combine(directory, $"curr{channel}_input");
        // ina2xx exposes power1_input (µW); ina3221 has no power attribute, so power is bus × current.
        string power = Path.Combine(directory, $"power{channel}_input");
        _powerFile = File.Exists(power) ? power : null;
    }

    public string Name { get; }
    public string Directory { get; }
    public TimeSpan UpdateInterval { get; }

    /// <summary>
    /// Finds the hwmon device whose <c>name</c> attribute is <paramref name="chip"/> (e.g. "ina226", "ina3221")
    /// under <paramref name="root"/> (normally /sys/class/hwmon; tests pass a directory tree of their own).
    /// </summary>
    /// <param name="channel">1 for INA226; 1..3 for the INA3221's three channels.</param>
    public static HwmonPowerSensor Open(string root, string chip, int channel)
    {
        if (!System.IO.Directory.Exists(root))
            throw new PowerSensorException($"hwmon: {root} does not exist (is the kernel driver for {chip} loaded?)");
        if (channel < 1) throw new PowerSensorException($"hwmon: channel must be 1 or more (got {channel})");
        foreach (string dir in System.IO.Directory.EnumerateDirectories(root, "hwmon*").Order(StringComparer.Ordinal))
        {
            string nameFile = Path.Combine(dir, "name");
            if (!File.Exists(nameFile)) continue;
            if (!string.Equals(File.ReadAllText(nameFile).Trim(), chip, StringComparison.Ordinal)) continue;
            if (!File.Exists(Path.Combine(dir, $"in{channel}_input")) || !File.Exists(Path.Combine(dir, $"curr{channel}_input")))
                throw new PowerSensorException($"hwmon: {dir} ({chip}) has no channel {channel} (in{channel}_input/curr{channel}_input missing)");
            TimeSpan interval = TimeSpan.FromMilliseconds(1);
            string intervalFile = Path.Combine(dir, "update_interval");
            if (File.Exists(intervalFile) && long.TryParse(File.ReadAllText(intervalFile).Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out long ms) && ms > 0)
                interval = TimeSpan.FromMilliseconds(ms);
            return new HwmonPowerSensor(dir, chip, channel, interval);
        }
        throw new PowerSensorException($"hwmon: no device named '{chip}' under {root}");
    }

    public PowerReading Read()
    {
        double bus = ReadLong(_busFile) / 1000.0;
        double current = ReadLong(_currentFile) / 1000.0;
        double power = _powerFile is null ? bus * current : ReadLong(_powerFile) / 1e6;
        // ina2xx reports power unsigned; keep the sign of the current so reverse flow stays negative.
        if (_powerFile is not null && current < 0 && power > 0) power = -power;
        return new PowerReading(bus, current, power);
    }

    private static long ReadLong(string file)
    {
        string text;
        try { text = File.ReadAllText(file); }
        catch (IOException e) { throw new PowerSensorException($"hwmon: cannot read {file}: {e.Message}", e); }
        catch (UnauthorizedAccessException e) { throw new PowerSensorException($"hwmon: cannot read {file}: {e.Message}", e); }
        if (!long.TryParse(text.Trim(), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long value))
            throw new PowerSensorException($"hwmon: {file} holds '{text.Trim()}', not an integer");
        return value;
    }

    public void Dispose() { }
}
