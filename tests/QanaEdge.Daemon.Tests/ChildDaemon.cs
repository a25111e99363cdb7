using Microsoft.Extensions.Hosting;
using QanaEdge.Daemon.Hosting;
using QanaEdge.Daemon.Tests.Infrastructure;

namespace QanaEdge.Daemon.Tests;

/// <summary>
/// Entry point used when the tests run the daemon as a child process (`dotnet exec QanaEdge.Daemon.Tests.dll
/// --daemon-child ...`): the real host with the interim classifier, so that SIGKILL and sd_notify can be exercised on a
/// separate process. The test host never calls it.
/// </summary>
public static class ChildDaemon
{
    public static async Task<int> Main(string[] args)
    {
        if (args.Length == 0 || args[0] != "--daemon-child")
        {
            Console.Error.WriteLine("this assembly holds tests; run it with dotnet test");
            return 2;
        }
        using IHost host = DaemonHost.Build(args[1..], InterimClassifier.Provider.Create);
        await host.RunAsync();
        return 0;
    }
}
