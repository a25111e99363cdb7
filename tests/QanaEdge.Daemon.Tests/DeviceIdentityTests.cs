using Microsoft.Extensions.Configuration;
using QanaEdge.Daemon.Configuration;
using QanaEdge.Daemon.Tests.Infrastructure;

namespace QanaEdge.Daemon.Tests;

/// <summary>The device id a board gets when none is configured (<see cref="DeviceIdentity"/>).</summary>
public sealed class DeviceIdentityTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("qana-machine-id-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void A_machine_id_gives_the_keyed_hash_python_computes()
    {
        // python3: "qana-" + hmac.new(bytes.fromhex(machine_id), bytes.fromhex(APP_KEY), "sha256").hexdigest()[:12].
        // Pinned: a change of key or hash renames every device in the field.
        Assert.Equal("qana-37f6bf37f44a", DeviceIdentity.FromMachineId("0123456789abcdef0123456789abcdef\n"));
        Assert.Equal("qana-850a1f6ab05c", DeviceIdentity.FromMachineId("3d1219c7c4c5404aaa1f6d2a48adfda4"));
    }

    [Theory]
    [InlineData("")]
    [InlineData("uninitialized\n")] // what systemd images ship in /etc/machine-id before the first boot
    [InlineData("00000000000000000000000000000000")]
    [InlineData("0123456789abcdef0123456789abcde")]
    [InlineData("0123456789abcdef0123456789abcdeg")]
    public void Text_that_is_no_machine_id_gives_none(string text) => Assert.Null(DeviceIdentity.FromMachineId(text));

    [Fact]
    public void The_first_file_that_holds_a_machine_id_is_used()
    {
        string missing = Path.Combine(_dir, "absent"), placeholder = Write("etc", "uninitialized\n"), dbus = Write("dbus", "0123456789abcdef0123456789abcdef\n");

        string id = DeviceIdentity.FromMachine(out string source, [missing, placeholder, dbus]);

        Assert.Equal("qana-37f6bf37f44a", id);
        Assert.Equal("derived from " + dbus, source);
    }

    [Fact]
    public void Without_a_machine_id_the_fixed_default_is_used_and_said()
    {
        string id = DeviceIdentity.FromMachine(out string source, [Path.Combine(_dir, "absent"), Write("etc", "")]);

        Assert.Equal(DeviceIdentity.Fallback, id);
        Assert.StartsWith("no machine id readable in ", source);
    }

    [Fact]
    public void Unset_or_empty_DeviceId_is_derived_and_a_configured_one_is_kept()
    {
        string expected = DeviceIdentity.FromMachine(out string source);
        var unset = new Dictionary<string, string?> { ["Qana:Inbox"] = Path.Combine(_dir, "inbox"), ["Qana:StateDir"] = Path.Combine(_dir, "state"), ["Qana:Model"] = TestModel.Path_ };
        var empty = new Dictionary<string, string?>(unset) { ["Qana:DeviceId"] = "" };
        var configured = new Dictionary<string, string?>(unset) { ["Qana:DeviceId"] = "clinic-7" };

        foreach (var settings in new[] { unset, empty })
        {
            QanaOptions derived = Load(settings);
            Assert.Equal(expected, derived.DeviceId);
            Assert.Equal(source, derived.DeviceIdSource);
            Assert.Equal("qanad-" + expected, derived.Mqtt.ClientId);
        }
        QanaOptions kept = Load(configured);
        Assert.Equal("clinic-7", kept.DeviceId);
        Assert.Equal("configured", kept.DeviceIdSource);
    }

    private static QanaOptions Load(Dictionary<string, string?> settings) =>
        OptionsLoader.Load(new ConfigurationBuilder().AddInMemoryCollection(settings).Build());

    private string Write(string name, string text)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllText(path, text);
        return path;
    }
}
