using System.Globalization;
using System.Text.Json;
using Microsoft.Extensions.Configuration;
using QanaEdge.Daemon.Configuration;
using QanaEdge.Daemon.Tests.Infrastructure;

namespace QanaEdge.Daemon.Tests;

/// <summary>
/// The configuration the board image installs (systemd/appsettings.json, also the Yocto recipe's) sets the site's
/// paths and otherwise what the code and docs/daemon.md give as defaults: a value copied into the file and left
/// behind when a default changes would quietly override the measured default on every device.
/// </summary>
public sealed class ShippedConfigurationTests
{
    private static string Shipped => Path.Combine(TestEnv.RepositoryRoot, "systemd", "appsettings.json");

    /// <summary>The keys the shipped file sets on purpose (a board's paths), everything else must be the default.</summary>
    private static readonly string[] SiteKeys = ["Inbox", "StateDir", "Model", "Learning:KeyFile"];

    private static QanaOptions Bind(IConfiguration configuration) => OptionsLoader.Load(configuration);

    [Fact]
    public void The_shipped_appsettings_binds_to_the_code_defaults_except_the_site_paths()
    {
        // The model path must exist to bind: the board's default.qana is the test model here, in both.
        var model = new Dictionary<string, string?> { ["Qana:Model"] = TestModel.Path_ };
        IConfiguration shippedConfig = new ConfigurationBuilder().AddJsonFile(Shipped).AddInMemoryCollection(model).Build();
        QanaOptions shipped = Bind(shippedConfig);
        // The defaults: only the site keys, with the shipped file's values.
        var site = SiteKeys.ToDictionary(k => "Qana:" + k, k => shippedConfig["Qana:" + k]);
        QanaOptions defaults = Bind(new ConfigurationBuilder().AddInMemoryCollection(site).Build());

        Dictionary<string, string> a = Flatten(shipped), b = Flatten(defaults);
        var differ = a.Keys.Union(b.Keys).Where(k => a.GetValueOrDefault(k) != b.GetValueOrDefault(k))
            .Select(k => $"{k}: shipped {a.GetValueOrDefault(k)}, default {b.GetValueOrDefault(k)}").ToArray();
        Assert.True(differ.Length == 0, string.Join("; ", differ));
        Assert.Equal(1e-3, shipped.Learning.LearningRate);
    }

    [Fact]
    public void The_documented_learning_defaults_are_the_code_defaults()
    {
        var defaults = new LearningOptions();
        string row = File.ReadLines(Path.Combine(TestEnv.RepositoryRoot, "docs", "daemon.md"))
            .Single(l => l.StartsWith("| `Qana:Learning:Epochs`, `LearningRate` |", StringComparison.Ordinal));
        string documented = row.Split('|', StringSplitOptions.TrimEntries)[2];
        Assert.Equal(string.Create(CultureInfo.InvariantCulture, $"{defaults.Epochs}, {defaults.LearningRate:0.###}"), documented);
    }

    private static Dictionary<string, string> Flatten(QanaOptions options)
    {
        var flat = new Dictionary<string, string>(StringComparer.Ordinal);
        Walk(JsonSerializer.SerializeToElement(options), "", flat);
        return flat;
    }

    private static void Walk(JsonElement e, string prefix, Dictionary<string, string> flat)
    {
        if (e.ValueKind == JsonValueKind.Object)
            foreach (JsonProperty p in e.EnumerateObject()) Walk(p.Value, prefix.Length == 0 ? p.Name : $"{prefix}:{p.Name}", flat);
        // The daemon reads an empty string as "not set" (IsNullOrEmpty everywhere), as the file's empty Mqtt keys mean.
        else flat[prefix] = e.ValueKind == JsonValueKind.String && e.GetString()!.Length == 0 ? "null" : e.GetRawText();
    }
}
