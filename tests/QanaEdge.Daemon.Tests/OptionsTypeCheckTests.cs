using System.Reflection;
using Microsoft.Extensions.Configuration;
using QanaEdge.Daemon.Configuration;
using QanaEdge.Daemon.Tests.Infrastructure;

namespace QanaEdge.Daemon.Tests;

/// <summary>
/// Every typed option has its own line when its value does not parse. The loader lists the typed keys by hand; this
/// walks the options types, so an option added without its key in that list fails here.
/// </summary>
public sealed class OptionsTypeCheckTests : IDisposable
{
    private readonly string _dir = TestEnv.TempDir("options-types");

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    /// <summary>Every settable key of the options tree that is not a string, as its configuration path below Qana.</summary>
    private static IEnumerable<string> TypedKeys(Type type, string prefix)
    {
        foreach (PropertyInfo p in type.GetProperties(BindingFlags.Public | BindingFlags.Instance))
        {
            if (p.GetSetMethod() is null) continue; // not a key (set by the loader)
            Type t = Nullable.GetUnderlyingType(p.PropertyType) ?? p.PropertyType;
            if (t == typeof(string)) continue;
            if (t.IsClass && t.Namespace == typeof(QanaOptions).Namespace)
            {
                foreach (string key in TypedKeys(t, prefix + p.Name + ":")) yield return key;
                continue;
            }
            yield return prefix + p.Name;
        }
    }

    [Fact]
    public void Every_typed_key_with_a_bad_value_is_reported_on_its_own_line()
    {
        string[] keys = TypedKeys(typeof(QanaOptions), "").ToArray();
        // The walk itself finds the keys the loader once missed.
        Assert.Contains("Mqtt:TimeoutSeconds", keys);
        Assert.Contains("Learning:Enabled", keys);
        var settings = new Dictionary<string, string?>
        {
            ["Qana:Inbox"] = Path.Combine(_dir, "inbox"), ["Qana:StateDir"] = Path.Combine(_dir, "state"),
        };
        foreach (string key in keys) settings["Qana:" + key] = "x?";
        var e = Assert.Throws<ConfigurationException>(() => OptionsLoader.Load(new ConfigurationBuilder().AddInMemoryCollection(settings).Build()));
        string[] unreported = keys.Where(k => !e.Errors.Any(line => line.StartsWith($"Qana:{k}: 'x?' is not ", StringComparison.Ordinal))).ToArray();
        Assert.Empty(unreported);
    }

    [Theory]
    [InlineData("Mqtt:TimeoutSeconds", "ten")]
    [InlineData("Mqtt:RedeliverSeconds", "30s")]
    [InlineData("Akida:RetrySeconds", "1m")]
    [InlineData("Learning:Enabled", "yes")]
    [InlineData("Learning:LearningRate", "1e-3x")]
    public void A_bad_value_names_its_key_alongside_the_other_bad_keys(string key, string value)
    {
        var settings = new Dictionary<string, string?>
        {
            ["Qana:Inbox"] = Path.Combine(_dir, "inbox"), ["Qana:StateDir"] = Path.Combine(_dir, "state"),
            ["Qana:Workers"] = "many", ["Qana:" + key] = value,
        };
        var e = Assert.Throws<ConfigurationException>(() => OptionsLoader.Load(new ConfigurationBuilder().AddInMemoryCollection(settings).Build()));
        Assert.Contains("Qana:Workers: 'many' is not an integer", e.Errors);
        Assert.Contains(e.Errors, line => line.StartsWith($"Qana:{key}: '{value}' is not ", StringComparison.Ordinal));
    }
}
