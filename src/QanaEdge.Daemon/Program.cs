using Microsoft.Extensions.Hosting;
using QanaEdge.Daemon.Classification;
using QanaEdge.Daemon.Configuration;
using QanaEdge.Daemon.Hosting;
using QanaEdge.Devices.Power;

// qanad: exit 0 after a clean stop, 2 for bad configuration (one line per bad key), 1 for any other failure to
// start (one line: no model, port taken ...; a missing power sensor is not one: the daemon runs without it). Never a
// stack trace for bad input.
try
{
    using IHost host = DaemonHost.Build(args);
    await host.RunAsync();
    return 0;
}
catch (ConfigurationException e)
{
    foreach (string error in e.Errors) Console.Error.WriteLine($"qanad: configuration: {error}");
    return 2;
}
catch (ModelUnavailableException e)
{
    Console.Error.WriteLine($"qanad: no model: {e.Message}");
    return 1;
}
catch (Exception e) when (e is PowerSensorException or IOException or UnauthorizedAccessException or System.Net.Sockets.SocketException or InvalidOperationException
    or LiteDB.LiteException)
{
    Console.Error.WriteLine($"qanad: cannot start: {e.Message}");
    return 1;
}
