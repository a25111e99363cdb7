using System.Security.Cryptography;

namespace QanaEdge.Daemon.Configuration;

/// <summary>
/// The device id used when <c>Qana:DeviceId</c> is not set: derived from the machine id, so every board on a shared
/// broker has its own topics, MQTT session and result ids without anyone configuring them. Two boards left on one
/// fixed id would take each other's session over and mix their results under one topic.
/// <para>
/// The machine id itself is not published: systemd asks that it be kept confidential and that applications use an
/// id derived from it with a keyed hash (machine-id(5), <c>sd_id128_get_machine_app_specific</c>). Here that is
/// HMAC-SHA256 keyed by the machine id over this application's own constant, of which 48 bits are kept.
/// </para>
/// </summary>
public static class DeviceIdentity
{
    /// <summary>The id used where no machine id can be read (a container without one, for instance).</summary>
    public const string Fallback = "qana-dev";

    /// <summary>Where systemd (and before it D-Bus) keep the machine id, in the order they are read.</summary>
    public static readonly string[] MachineIdFiles = ["/etc/machine-id", "/var/lib/dbus/machine-id"];

    // This application's constant, so the id says nothing about the machine id to anyone who has another
    // application's derived id. Fixed forever: changing it renames every device.
    private static readonly byte[] ApplicationKey = Convert.FromHexString("6f1c2a9e5d3b47c8a0e4b7d21f9c3e58");

    /// <summary>
    /// "qana-" and 12 hex digits derived from the first readable machine id of <paramref name="machineIdFiles"/>,
    /// or <see cref="Fallback"/> when none holds one; <paramref name="source"/> says which.
    /// </summary>
    public static string FromMachine(out string source, IReadOnlyList<string>? machineIdFiles = null)
    {
        foreach (string file in machineIdFiles ?? MachineIdFiles)
        {
            string text;
            try { text = File.ReadAllText(file); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { continue; }
            if (FromMachineId(text) is string id)
            {
                source = "derived from " + file;
                return id;
            }
        }
        source = "no machine id readable in " + string.Join(" or ", machineIdFiles ?? MachineIdFiles) + ": the fixed default";
        return Fallback;
    }

    /// <summary>The id for a machine id (32 hex digits and a newline, machine-id(5)); null when it is not one.</summary>
    public static string? FromMachineId(string machineIdText)
    {
        string hex = machineIdText.Trim();
        if (hex.Length != 32 || !hex.All(char.IsAsciiHexDigit)) return null;
        byte[] machineId = Convert.FromHexString(hex);
        if (machineId.All(b => b == 0)) return null; // "uninitialized" placeholder images ship with
        byte[] mac = HMACSHA256.HashData(machineId, ApplicationKey);
        return "qana-" + Convert.ToHexStringLower(mac.AsSpan(0, 6));
    }
}
