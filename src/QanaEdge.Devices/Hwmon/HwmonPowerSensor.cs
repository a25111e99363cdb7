using System.Buffers.Text;
using System.Globalization;
using System.Text;
using Microsoft.Win32.SafeHandles;
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
    private const int MaxAttributeBytes = 32;
    // The attribute files, kept open between reads; null before the first read and after a failed one.
    private SafeFileHandle? _bus, _current, _power;
    private bool _disposed;

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
        ObjectDisposedException.ThrowIf(_disposed, this);
        try
        {
            // Opened at the first read, and again after a failed one (the only reads that allocate): the kernel ends an
            // open attribute file with ENODEV when its device goes away (driver unbound, chip lost), and a device that
            // comes back has new files at the same paths, which only a new open reaches.
            _bus ??= OpenFile(_busFile);
            _current ??= OpenFile(_currentFile);
            if (_powerFile is not null) _power ??= OpenFile(_powerFile);
            double bus = ReadLong(_bus, _busFile) / 1000.0;
            double current = ReadLong(_current, _currentFile) / 1000.0;
            double power = _power is null ? bus * current : ReadLong(_power, _powerFile!) / 1e6;
            // ina2xx reports power unsigned; keep the sign of the current so reverse flow stays negative.
            if (_power is not null && current < 0 && power > 0) power = -power;
            return new PowerReading(bus, current, power);
        }
        catch (PowerSensorException)
        {
            CloseFiles();
            throw;
        }
    }

    private static SafeFileHandle OpenFile(string file)
    {
        try { return File.OpenHandle(file, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete); }
        catch (IOException e) { throw new PowerSensorException($"hwmon: cannot read {file}: {e.Message}", e); }
        catch (UnauthorizedAccessException e) { throw new PowerSensorException($"hwmon: cannot read {file}: {e.Message}", e); }
    }

    /// <summary>
    /// The integer an attribute file holds, read from its start into a buffer on the stack: a sysfs attribute is made
    /// afresh by its driver at every read from offset 0, so the open file gives each new value, and nothing is allocated
    /// unless the read fails (the sampler reads every few milliseconds for the daemon's lifetime).
    /// </summary>
    private static long ReadLong(SafeFileHandle handle, string file)
    {
        // A long in decimal is at most 20 characters; a file that fills the buffer holds something else.
        Span<byte> buffer = stackalloc byte[MaxAttributeBytes];
        int length;
        try { length = RandomAccess.Read(handle, buffer, 0); }
        catch (IOException e) { throw new PowerSensorException($"hwmon: cannot read {file}: {e.Message}", e); }
        catch (UnauthorizedAccessException e) { throw new PowerSensorException($"hwmon: cannot read {file}: {e.Message}", e); }
        ReadOnlySpan<byte> text = buffer[..length].Trim(" \t\r\n"u8);
        if (length == buffer.Length || !Utf8Parser.TryParse(text, out long value, out int consumed) || consumed != text.Length)
            throw new PowerSensorException($"hwmon: {file} holds '{Encoding.UTF8.GetString(text)}', not an integer");
        return value;
    }

    private void CloseFiles()
    {
        _bus?.Dispose(); _bus = null;
        _current?.Dispose(); _current = null;
        _power?.Dispose(); _power = null;
    }

    public void Dispose()
    {
        _disposed = true;
        CloseFiles();
    }
}
