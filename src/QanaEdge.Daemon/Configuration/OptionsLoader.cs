using System.Globalization;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Options;
using QanaEdge.Model;
using QanaEdge.Runtime.Kernels;

namespace QanaEdge.Daemon.Configuration;

/// <summary>Source-generated validation of the data annotations (no reflection: AOT clean).</summary>
[OptionsValidator]
public sealed partial class QanaOptionsValidator : IValidateOptions<QanaOptions>;


/// <summary>Bad configuration: one line per bad key.</summary>
public sealed class ConfigurationException(IReadOnlyList<string> errors)
    : Exception(string.Join(Environment.NewLine, errors))
{
    public IReadOnlyList<string> Errors { get; } = errors;
}

/// <summary>
/// Binds section <c>Qana</c> (source-generated binder) and validates it, collecting one clear message per bad key
/// instead of stopping at the first.
/// </summary>
public static class OptionsLoader
{
    public static QanaOptions Load(IConfiguration configuration)
    {
        IConfigurationSection section = configuration.GetSection(QanaOptions.Section);
        var errors = new List<string>();
        // QANA_KERNEL_ISA (the kernels' cap, read from the environment) is configuration too: a bad value stops the start.
        if (InstructionSets.CapError is { } capError) errors.Add(capError);
        // The binder throws on the first unconvertible value; check every typed key first so that each bad key
        // gets its own line.
        CheckTypes(section, "Qana", errors);
        if (errors.Count > 0) throw new ConfigurationException(errors);

        QanaOptions options = new();
        try { section.Bind(options); }
        catch (InvalidOperationException e) { throw new ConfigurationException([e.Message]); }
        if (string.IsNullOrWhiteSpace(options.DeviceId))
        {
            options.DeviceId = DeviceIdentity.FromMachine(out string source);
            options.DeviceIdSource = source;
        }

        Add(errors, new QanaOptionsValidator().Validate(null, options));
        CheckSemantics(options, errors);
        if (errors.Count > 0) throw new ConfigurationException(errors);

        // Folders in one form, absolute and without a trailing '/': the watcher compares the folder of every event
        // with Inbox, and "inbox/" (GetFullPath keeps the slash) matched no file at all.
        options.Inbox = FullDirectory(options.Inbox);
        options.StateDir = FullDirectory(options.StateDir);
        options.DoneDir = FullDirectory(string.IsNullOrWhiteSpace(options.DoneDir) ? Path.Combine(options.StateDir, "done") : options.DoneDir);
        options.QuarantineDir = FullDirectory(string.IsNullOrWhiteSpace(options.QuarantineDir) ? Path.Combine(options.StateDir, "quarantine") : options.QuarantineDir);
        options.TrustDir = FullDirectory(options.TrustDir);
        options.Akida.DevDir = FullDirectory(options.Akida.DevDir);
        options.Power.HwmonRoot = FullDirectory(options.Power.HwmonRoot);
        options.Learning.KeyFile = Path.GetFullPath(string.IsNullOrWhiteSpace(options.Learning.KeyFile) ? Path.Combine(options.StateDir, "learner.key") : options.Learning.KeyFile);
        if (string.IsNullOrWhiteSpace(options.Mqtt.ClientId)) options.Mqtt.ClientId = "qanad-" + options.DeviceId;
        if (options.Workers == 0) options.Workers = Environment.ProcessorCount;
        return options;
    }

    /// <summary>The absolute form of a folder, without a trailing separator ("/" stays "/").</summary>
    public static string FullDirectory(string path) => Path.TrimEndingDirectorySeparator(Path.GetFullPath(path));

    private static void Add(List<string> errors, ValidateOptionsResult result)
    {
        if (!result.Failed) return;
        // The generated validator says "DataAnnotation validation failed for 'QanaOptions.Mqtt' members: 'Port' with
        // the error: '...'."; turn that into "Qana:Mqtt:Port: ..." so the operator sees the key to fix.
        foreach (string failure in result.Failures ?? []) errors.Add(Rewrite(failure));
    }

    private static string Rewrite(string failure)
    {
        // The generator of .NET 10 says "Port: The field QanaOptions.Mqtt.Port must be between 1 and 65535.", which the
        // parse below left as "Qana: Port: ...": a key no configuration has, the same for Mqtt:Port and any other Port.
        const string field = ": The field " + nameof(QanaOptions) + ".";
        int at = failure.IndexOf(field, StringComparison.Ordinal);
        if (at > 0)
        {
            string rest = failure[(at + field.Length)..];
            int space = rest.IndexOf(' ');
            if (space > 0)
            {
                string path = rest[..space];
                string member = path[(path.LastIndexOf('.') + 1)..];
                return $"Qana:{path.Replace('.', ':')}: The field {member} {rest[(space + 1)..].TrimEnd('.')}";
            }
        }
        string prefix = "Qana";
        const string forType = "for '";
        int f = failure.IndexOf(forType, StringComparison.Ordinal);
        if (f >= 0)
        {
            int end = failure.IndexOf('\'', f + forType.Length);
            if (end > f)
            {
                string type = failure[(f + forType.Length)..end];
                int dot = type.IndexOf('.');
                prefix = dot < 0 ? "Qana" : "Qana:" + type[(dot + 1)..].Replace('.', ':');
            }
        }
        const string members = "members: '";
        int m = failure.IndexOf(members, StringComparison.Ordinal);
        const string with = "' with the error: '";
        int w = failure.IndexOf(with, StringComparison.Ordinal);
        if (m < 0 || w < m) return $"{prefix}: {failure}";
        string key = failure[(m + members.Length)..w];
        string message = failure[(w + with.Length)..].TrimEnd('.').TrimEnd('\'');
        return $"{prefix}:{key}: {message}";
    }

    private static void CheckSemantics(QanaOptions o, List<string> errors)
    {
        // qana/fleet/... is the fleet's own level: a device of that id would have its updates topic be the fleet's (a
        // package for that one device would reach every device) and publish its results and status there.
        if (o.DeviceId == "fleet")
            errors.Add("Qana:DeviceId: 'fleet' is the topic level of messages for every device (qana/fleet/updates); choose another id");
        if (!string.IsNullOrWhiteSpace(o.Learning.KeyFile) && !o.Learning.KeyFile.EndsWith(".key", StringComparison.Ordinal))
            errors.Add($"Qana:Learning:KeyFile: {o.Learning.KeyFile} must end in .key (its public half is the same name ending in .pub)");
        if (o.Mqtt.ReconnectMaxSeconds < o.Mqtt.ReconnectMinSeconds)
            errors.Add($"Qana:Mqtt:ReconnectMaxSeconds: must be at least ReconnectMinSeconds ({o.Mqtt.ReconnectMinSeconds})");
        bool tlsFilesExist = true;
        foreach (var (key, file) in new[] { ("Model", o.Model), ("Mqtt:CaFile", o.Mqtt.CaFile), ("Mqtt:ClientCertificate", o.Mqtt.ClientCertificate), ("Mqtt:ClientKey", o.Mqtt.ClientKey) })
            if (!string.IsNullOrEmpty(file) && ExpectedPath.FileProblem(file) is { } problem)
            {
                errors.Add($"Qana:{key}: {file} {ExpectedPath.AsClause(problem)}");
                if (key != "Model") tlsFilesExist = false;
            }
        // That a TLS file exists said nothing of whether it could be used: one the daemon's user cannot read, a DER CA
        // file, a wrong PKCS#12 password or a key of another certificate failed in the link's loop, which then ended
        // without a word, and the daemon ran on with every result held in the outbox.
        if (tlsFilesExist && CheckTlsFiles(o.Mqtt) is { } tlsError) errors.Add(tlsError);
        if (!string.IsNullOrEmpty(o.Mqtt.Password) && string.IsNullOrEmpty(o.Mqtt.Username))
            errors.Add("Qana:Mqtt:Password: set without Qana:Mqtt:Username");
        if (string.IsNullOrWhiteSpace(o.Mqtt.Host) && (o.Mqtt.Tls || !string.IsNullOrEmpty(o.Mqtt.CaFile)))
            errors.Add("Qana:Mqtt:Tls: TLS needs Qana:Mqtt:Host (the embedded broker is plain loopback)");
        if (o.Power.Sensor == PowerSensorKind.Hwmon && o.Power.HwmonChip is not ("ina226" or "ina3221" or "ina219" or "ina230" or "ina231"))
            errors.Add($"Qana:Power:HwmonChip: '{o.Power.HwmonChip}' is not an INA hwmon driver name (ina226, ina3221, ...)");
        // Folders the daemon makes when they are missing: one that is a file (or lies under one) failed later, with
        // exit 1 and "The file '...' already exists", which named no setting (the inbox's in the middle of a stack trace).
        foreach (var (key, folder) in new[] { ("Inbox", o.Inbox), ("StateDir", o.StateDir), ("DoneDir", o.DoneDir), ("QuarantineDir", o.QuarantineDir) })
            if (!string.IsNullOrWhiteSpace(folder) && FileInTheWay(folder) is { } file)
                errors.Add(file == FullDirectory(folder) ? $"Qana:{key}: {folder} {ExpectedPath.FileForFolder}" : $"Qana:{key}: {folder} lies under {file}, which is a file");
        // Compared as the folders they name ("inbox/" is "inbox").
        string full(string p) => FullDirectory(p);
        if (!string.IsNullOrWhiteSpace(o.Inbox) && !string.IsNullOrWhiteSpace(o.StateDir) && full(o.Inbox) == full(o.StateDir))
            errors.Add("Qana:StateDir: must differ from Qana:Inbox");
        // A capture moved to the done or quarantine folder would land in the inbox again and be taken again: a
        // duplicate moved back for ever, or a rejected file quarantined under a new name at every rescan.
        foreach (var (key, folder) in new[] { ("DoneDir", o.DoneDir), ("QuarantineDir", o.QuarantineDir) })
        {
            if (!string.IsNullOrWhiteSpace(o.Inbox) && !string.IsNullOrWhiteSpace(folder) && full(o.Inbox) == full(folder))
                errors.Add($"Qana:{key}: must differ from Qana:Inbox (captures moved there would be taken again)");
            // Qana:MinFreeMegabytes deletes the oldest files of done/ and quarantine/ when the disk runs short: in the
            // state folder those would be the store and the learner's key.
            if (!string.IsNullOrWhiteSpace(o.StateDir) && !string.IsNullOrWhiteSpace(folder) && full(o.StateDir) == full(folder))
                errors.Add($"Qana:{key}: must differ from Qana:StateDir (its oldest files are deleted when the disk runs short of Qana:MinFreeMegabytes)");
        }
    }

    /// <summary>The folder itself, or the nearest of its parents that exists, when that is a file; else null.</summary>
    private static string? FileInTheWay(string folder)
    {
        for (string? path = FullDirectory(folder); !string.IsNullOrEmpty(path); path = Path.GetDirectoryName(path))
        {
            if (Directory.Exists(path)) return null;
            if (File.Exists(path)) return path;
        }
        return null;
    }

    private static string? CheckTlsFiles(MqttOptions mqtt)
    {
        try
        {
            var (chain, client) = MqttTlsFiles.Load(mqtt);
            client?.Dispose();
            foreach (var certificate in chain ?? []) certificate.Dispose();
            return null;
        }
        catch (MqttTlsFileException e) { return e.Message; }
    }

    private static readonly (string Key, Func<string, bool> Parses, string Expect)[] TypedKeys =
    [
        ("Engine", IsEnum<EnginePreference>, "Auto, Managed or Akida"),
        ("Fallback", IsEnum<ViewFallback>, "Tiling or Symmetries"),
        ("Done", IsEnum<DonePolicy>, "Move or Delete"),
        ("MinFreeMegabytes", IsLong, "an integer"),
        ("KeepResultsDays", IsInt, "an integer"),
        ("RescanSeconds", IsDouble, "a number"),
        ("StableMilliseconds", IsInt, "an integer"),
        ("MaxFileBytes", IsLong, "an integer"),
        ("Workers", IsInt, "an integer"),
        ("QueueCapacity", IsInt, "an integer"),
        ("QueueBytes", IsLong, "an integer"),
        ("Mqtt:Port", IsInt, "an integer 1-65535"),
        ("Mqtt:Tls", IsBool, "true or false"),
        ("Mqtt:KeepAliveSeconds", IsInt, "an integer"),
        ("Mqtt:ReconnectMinSeconds", IsDouble, "a number"),
        ("Mqtt:ReconnectMaxSeconds", IsDouble, "a number"),
        ("Mqtt:MaxInflight", IsInt, "an integer"),
        ("Mqtt:MaxRefusals", IsInt, "an integer"),
        ("Mqtt:TimeoutSeconds", IsDouble, "a number"),
        ("Mqtt:RedeliverSeconds", IsDouble, "a number"),
        ("Mqtt:UpdateApplySeconds", IsDouble, "a number"),
        ("Power:Sensor", IsEnum<PowerSensorKind>, "None, Ina219, Ina236 or Hwmon"),
        ("Power:I2cBus", IsInt, "an integer"),
        ("Power:I2cAddress", IsIntOrHex, "an integer (0x40 allowed)"),
        ("Power:ShuntOhms", IsDouble, "a number"),
        ("Power:MaxCurrentAmps", IsDouble, "a number"),
        ("Power:HwmonChannel", IsInt, "an integer"),
        ("Power:SampleMilliseconds", IsDouble, "a number"),
        ("Power:IdleSamples", IsInt, "an integer"),
        ("Power:IdleWatts", IsDouble, "a number"),
        ("Power:TelemetrySeconds", IsDouble, "a number"),
        ("Camera:Enabled", IsBool, "true or false"),
        ("Camera:Device", IsInt, "an integer"),
        ("Camera:Width", IsInt, "an integer"),
        ("Camera:Height", IsInt, "an integer"),
        ("Camera:WarmupFrames", IsInt, "an integer"),
        ("Camera:ButtonPin", IsInt, "an integer"),
        ("Camera:DebounceMilliseconds", IsInt, "an integer"),
        ("Camera:CaptureTimeoutSeconds", IsInt, "an integer"),
        ("Camera:MaxBacklog", IsInt, "an integer"),
        ("Akida:RetrySeconds", IsDouble, "a number"),
        ("Learning:Enabled", IsBool, "true or false"),
        ("Learning:MinCases", IsInt, "an integer"),
        ("Learning:NewCases", IsInt, "an integer"),
        ("Learning:Epochs", IsInt, "an integer"),
        ("Learning:LearningRate", IsDouble, "a number"),
    ];

    /// <summary>
    /// Every string key of the options tree. Listed by hand for the same reason as <see cref="TypedKeys"/>;
    /// <c>OptionsKeyTests</c> walks the options types and fails when a key of a new option is missing from either list.
    /// </summary>
    private static readonly string[] StringKeys =
    [
        "Inbox", "StateDir", "DeviceId", "Model", "DoneDir", "QuarantineDir", "TrustDir",
        "Mqtt:Host", "Mqtt:ClientId", "Mqtt:Username", "Mqtt:Password", "Mqtt:CaFile", "Mqtt:ClientCertificate", "Mqtt:ClientKey",
        "Power:HwmonChip", "Power:HwmonRoot",
        "Akida:Library", "Akida:DevDir",
        "Learning:KeyFile",
    ];

    /// <summary>Every key below <c>Qana</c> that an option reads (configuration keys ignore case).</summary>
    public static IReadOnlySet<string> KnownKeys { get; } =
        new HashSet<string>(TypedKeys.Select(k => k.Key).Concat(StringKeys), StringComparer.OrdinalIgnoreCase);

    /// <summary>
    /// The keys below <c>Qana</c> that carry a value but that no option reads, spelt as configured below <c>Qana:</c>
    /// (QANA__MQTT__HOTS is <c>Qana:MQTT:HOTS</c>): the binder ignores them silently, so a misspelt key left the default in use unnoticed.
    /// They are only warned about: an old key left in a file must not stop a device.
    /// </summary>
    public static IReadOnlyList<string> UnknownKeys(IConfiguration configuration)
    {
        IConfigurationSection section = configuration.GetSection(QanaOptions.Section);
        var unknown = new List<string>();
        foreach (KeyValuePair<string, string?> entry in section.AsEnumerable(makePathsRelative: true))
            if (entry.Value is not null && !KnownKeys.Contains(entry.Key)) unknown.Add(QanaOptions.Section + ":" + entry.Key);
        unknown.Sort(StringComparer.OrdinalIgnoreCase);
        return unknown;
    }

    /// <summary>
    /// Checks every non-string key of the options tree (<see cref="TypedKeys"/>) parses as its type. Listed by hand
    /// (reflection over the options types would need trimming annotations down the whole tree under Native AOT);
    /// <c>OptionsTypeCheckTests</c> walks the options types and fails when a key of a new option is missing here.
    /// </summary>
    private static void CheckTypes(IConfigurationSection section, string path, List<string> errors)
    {
        foreach (var (key, parses, expect) in TypedKeys)
        {
            string? value = section[key];
            if (value is null || parses(value)) continue;
            errors.Add($"{path}:{key}: '{value}' is not {expect}");
        }
        // Hex addresses are common for I2C; the binder only knows decimal, so normalise in place.
        string? address = section["Power:I2cAddress"];
        if (address is not null && address.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
            && int.TryParse(address.AsSpan(2), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out int a))
            section["Power:I2cAddress"] = a.ToString(CultureInfo.InvariantCulture);
    }

    private static bool IsInt(string s) => int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out _);
    private static bool IsLong(string s) => long.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out _);
    private static bool IsDouble(string s) => double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) && double.IsFinite(v);
    private static bool IsBool(string s) => bool.TryParse(s, out _);
    private static bool IsIntOrHex(string s) => IsInt(s) || (s.StartsWith("0x", StringComparison.OrdinalIgnoreCase) && int.TryParse(s.AsSpan(2), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out _));
    private static bool IsEnum<T>(string s) where T : struct, Enum => Enum.TryParse<T>(s, ignoreCase: true, out _) && !int.TryParse(s, out _);
}
