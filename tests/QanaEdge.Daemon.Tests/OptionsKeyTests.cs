using System.Reflection;
using Microsoft.Extensions.Configuration;
using QanaEdge.Daemon.Configuration;
using QanaEdge.Daemon.Tests.Infrastructure;
using Serilog.Events;

namespace QanaEdge.Daemon.Tests;

/// <summary>
/// A key under Qana that no option reads (a misspelling such as Qana:Mqtt:Hots) is warned about at start, once per
/// key, and does not stop the daemon. The loader lists the known keys by hand (Native AOT); this walks the options types.
/// </summary>
public sealed class OptionsKeyTests : IDisposable
{
    private readonly string _dir = TestEnv.TempDir("options-keys");

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    /// <summary>Every settable key of the options tree, as its configuration path below Qana.</summary>
    private static IEnumerable<string> Keys(Type type, string prefix)
    {
        foreach (PropertyInfo p in type.GetProperties(BindingFlags.Public | BindingFlags.Instance))
        {
            if (p.GetSetMethod() is null) continue; // not a key (set by the loader)
            Type t = Nullable.GetUnderlyingType(p.PropertyType) ?? p.PropertyType;
            if (t.IsClass && t != typeof(string) && t.Namespace == typeof(QanaOptions).Namespace)
            {
                foreach (string key in Keys(t, prefix + p.Name + ":")) yield return key;
                continue;
            }
            yield return prefix + p.Name;
        }
    }

    [Fact]
    public void The_known_keys_are_exactly_the_keys_of_the_options_types()
    {
        string[] walked = Keys(typeof(QanaOptions), "").Order(StringComparer.Ordinal).ToArray();
        Assert.Contains("Mqtt:Host", walked);
        Assert.Equal(walked, OptionsLoader.KnownKeys.Order(StringComparer.Ordinal).ToArray());
    }

    [Fact]
    public void A_misspelt_key_is_named_once_in_either_spelling_and_a_correct_one_is_not()
    {
        var settings = new Dictionary<string, string?>
        {
            ["Qana:Inbox"] = Path.Combine(_dir, "inbox"), ["Qana:StateDir"] = Path.Combine(_dir, "state"),
            // As the environment provider gives QANA__MQTT__HOTS and QANA__POWER__SENSOR (known keys ignore case).
            ["QANA:MQTT:HOTS"] = "broker", ["QANA:POWER:SENSOR"] = "None", ["Qana:Camera:Enable"] = "true",
            ["Qana:mqtt:port"] = "1884", ["Other:Key"] = "x",
        };
        IConfiguration configuration = new ConfigurationBuilder().AddInMemoryCollection(settings).Build();
        Assert.Equal(["Qana:Camera:Enable", "Qana:MQTT:HOTS"], OptionsLoader.UnknownKeys(configuration));
        // Not refused: the rest binds as before.
        QanaOptions options = OptionsLoader.Load(configuration);
        Assert.Equal(1884, options.Mqtt.Port);
        Assert.Null(options.Mqtt.Host);
    }

    [Fact]
    public void The_shipped_configuration_has_no_unknown_key()
    {
        IConfiguration shipped = new ConfigurationBuilder().AddJsonFile(Path.Combine(TestEnv.RepositoryRoot, "systemd", "appsettings.json")).Build();
        Assert.Empty(OptionsLoader.UnknownKeys(shipped));
    }

    [Fact]
    public async Task The_daemon_warns_about_each_unknown_key_and_not_about_known_ones()
    {
        await using (var misspelt = new DaemonRunner(Path.Combine(_dir, "a"), brokerPort: null, "keys-a", null, "--Qana:Mqtt:Hots=broker", "--Qana:Workerz=3"))
        {
            string[] warnings = misspelt.Log.At(LogEventLevel.Warning).Where(w => w.StartsWith("OptionsLoader: ", StringComparison.Ordinal)).ToArray();
            Assert.Equal(2, warnings.Length);
            Assert.Contains(warnings, w => w.Contains("Qana:Mqtt:Hots", StringComparison.Ordinal) && w.Contains("docs/daemon.md", StringComparison.Ordinal));
            Assert.Contains(warnings, w => w.Contains("Qana:Workerz", StringComparison.Ordinal));
        }
        await using var correct = new DaemonRunner(Path.Combine(_dir, "b"), brokerPort: null, "keys-b", null, "--Qana:Mqtt:Port=1884");
        Assert.DoesNotContain(correct.Log.At(LogEventLevel.Warning), w => w.StartsWith("OptionsLoader: ", StringComparison.Ordinal));
    }
}
