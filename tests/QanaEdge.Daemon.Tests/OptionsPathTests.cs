using Microsoft.Extensions.Configuration;
using QanaEdge.Daemon.Configuration;
using QanaEdge.Daemon.Tests.Infrastructure;

namespace QanaEdge.Daemon.Tests;

/// <summary>The daemon's file options name a folder given for a file as such; a missing file still "does not exist".</summary>
public sealed class OptionsPathTests : IDisposable
{
    private readonly string _dir = TestEnv.TempDir("options");

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    [Fact]
    public void A_folder_given_as_the_model_or_a_certificate_is_reported_as_a_folder()
    {
        string folder = Directory.CreateDirectory(Path.Combine(_dir, "model.qana")).FullName;
        string missing = Path.Combine(_dir, "missing.qana");
        var settings = new Dictionary<string, string?>
        {
            ["Qana:Inbox"] = Path.Combine(_dir, "inbox"), ["Qana:StateDir"] = Path.Combine(_dir, "state"),
            ["Qana:Model"] = folder, ["Qana:Mqtt:Host"] = "broker", ["Qana:Mqtt:CaFile"] = missing,
        };
        var e = Assert.Throws<ConfigurationException>(() => OptionsLoader.Load(new ConfigurationBuilder().AddInMemoryCollection(settings).Build()));
        Assert.Contains($"Qana:Model: {folder} is a directory, expected a file", e.Errors);
        Assert.Contains($"Qana:Mqtt:CaFile: {missing} does not exist", e.Errors);
    }

    /// <summary>
    /// A folder the daemon makes when it is missing, given as a file (or under one), is refused at start naming the
    /// setting. Before, the start failed later (exit 1) with "The file '...' already exists", which named none.
    /// </summary>
    [Fact]
    public void A_file_given_as_a_folder_the_daemon_makes_is_refused_naming_the_setting()
    {
        string file = Path.Combine(_dir, "a-file");
        File.WriteAllText(file, "");
        var settings = new Dictionary<string, string?>
        {
            ["Qana:Inbox"] = file, ["Qana:StateDir"] = Path.Combine(file, "state"), ["Qana:QuarantineDir"] = Path.Combine(_dir, "quarantine"),
        };
        var e = Assert.Throws<ConfigurationException>(() => OptionsLoader.Load(new ConfigurationBuilder().AddInMemoryCollection(settings).Build()));
        Assert.Equal([$"Qana:Inbox: {file} is a file, expected a directory", $"Qana:StateDir: {Path.Combine(file, "state")} lies under {file}, which is a file"], e.Errors);
    }

    /// <summary>
    /// A state folder that cannot be written (here one under /proc, which no one may make folders in, as a read-only
    /// mount refuses them) stops the start as bad configuration naming the setting; before, it was a "cannot start"
    /// with the system's error alone.
    /// </summary>
    [Fact]
    public void A_state_folder_that_cannot_be_written_is_refused_naming_the_setting()
    {
        var e = Assert.Throws<ConfigurationException>(() => Hosting.StateLock.Acquire("/proc/qana-state"));
        Assert.StartsWith("Qana:StateDir: /proc/qana-state cannot be written: ", Assert.Single(e.Errors));
    }

    /// <summary>
    /// A value out of its range is reported under its whole key, as docs/daemon.md shows. The validator's message
    /// ("Port: The field QanaOptions.Mqtt.Port must be ...") was passed on as "Qana: Port: ...", a key that does not
    /// exist and that did not say which Port.
    /// </summary>
    [Fact]
    public void A_value_out_of_range_is_reported_under_its_whole_key()
    {
        var settings = new Dictionary<string, string?>
        {
            ["Qana:Inbox"] = Path.Combine(_dir, "inbox"), ["Qana:StateDir"] = Path.Combine(_dir, "state"),
            ["Qana:Mqtt:Port"] = "0", ["Qana:Workers"] = "-1",
        };
        var e = Assert.Throws<ConfigurationException>(() => OptionsLoader.Load(new ConfigurationBuilder().AddInMemoryCollection(settings).Build()));
        Assert.Contains("Qana:Mqtt:Port: The field Port must be between 1 and 65535", e.Errors);
        Assert.Contains("Qana:Workers: The field Workers must be between 0 and 64", e.Errors);
    }

    /// <summary>A device id of "fleet" would make the device's updates topic the fleet's own: refused at start.</summary>
    [Fact]
    public void The_fleet_topic_level_is_refused_as_a_device_id()
    {
        const string id = "fleet";
        Assert.Equal(Messaging.Topics.FleetUpdates, new Messaging.Topics("fleet").Updates);   // why
        var settings = new Dictionary<string, string?>
        {
            ["Qana:Inbox"] = Path.Combine(_dir, "inbox"), ["Qana:StateDir"] = Path.Combine(_dir, "state"), ["Qana:DeviceId"] = id,
        };
        var e = Assert.Throws<ConfigurationException>(() => OptionsLoader.Load(new ConfigurationBuilder().AddInMemoryCollection(settings).Build()));
        Assert.Contains("Qana:DeviceId: 'fleet' is the topic level of messages for every device (qana/fleet/updates); choose another id", e.Errors);
    }

    /// <summary>
    /// The done or quarantine folder set to the inbox (with or without a trailing '/') is refused at start: a capture
    /// moved there lands in the inbox again and is taken again, for ever.
    /// </summary>
    [Fact]
    public void A_done_or_quarantine_folder_that_is_the_inbox_is_refused()
    {
        string inbox = Path.Combine(_dir, "inbox");
        var settings = new Dictionary<string, string?>
        {
            ["Qana:Inbox"] = inbox, ["Qana:StateDir"] = Path.Combine(_dir, "state"),
            ["Qana:DoneDir"] = inbox + "/", ["Qana:QuarantineDir"] = inbox,
        };
        var e = Assert.Throws<ConfigurationException>(() => OptionsLoader.Load(new ConfigurationBuilder().AddInMemoryCollection(settings).Build()));
        Assert.Contains("Qana:DoneDir: must differ from Qana:Inbox (captures moved there would be taken again)", e.Errors);
        Assert.Contains("Qana:QuarantineDir: must differ from Qana:Inbox (captures moved there would be taken again)", e.Errors);
    }

    /// <summary>
    /// The done or quarantine folder set to the state folder is refused at start: Qana:MinFreeMegabytes deletes the
    /// oldest files there when the disk runs short, which in the state folder are the store and the learner's key.
    /// </summary>
    [Fact]
    public void A_done_or_quarantine_folder_that_is_the_state_folder_is_refused()
    {
        string state = Path.Combine(_dir, "state");
        var settings = new Dictionary<string, string?>
        {
            ["Qana:Inbox"] = Path.Combine(_dir, "inbox"), ["Qana:StateDir"] = state,
            ["Qana:DoneDir"] = state + "/", ["Qana:QuarantineDir"] = state,
        };
        var e = Assert.Throws<ConfigurationException>(() => OptionsLoader.Load(new ConfigurationBuilder().AddInMemoryCollection(settings).Build()));
        Assert.Contains("Qana:DoneDir: must differ from Qana:StateDir (its oldest files are deleted when the disk runs short of Qana:MinFreeMegabytes)", e.Errors);
        Assert.Contains("Qana:QuarantineDir: must differ from Qana:StateDir (its oldest files are deleted when the disk runs short of Qana:MinFreeMegabytes)", e.Errors);
    }
}
