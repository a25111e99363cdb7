using Microsoft.Extensions.DependencyInjection;
using QanaEdge.Daemon.Classification;
using QanaEdge.Daemon.Updates;

namespace QanaEdge.Daemon.Tests.Infrastructure;

/// <summary>
/// The daemon's classifier workers held between images: a model swap that changes nothing waits on a gate while it
/// holds the swap lock, so captures are read and queued but none is classified until <see cref="ReleaseAsync"/>.
/// </summary>
public sealed class HeldWorkers : IDisposable
{
    private readonly ManualResetEventSlim _gate = new();
    private readonly Task _swap;

    private HeldWorkers(ActiveModel active)
    {
        using var holding = new ManualResetEventSlim();
        _swap = Task.Run(() => active.Swap(p => { holding.Set(); _gate.Wait(); return (p, active.Source, 0); }));
        Assert.True(holding.Wait(TimeSpan.FromSeconds(10)), "the workers were not held within 10 s");
    }

    /// <summary>Holds the workers of a started daemon; returns once they are held.</summary>
    public static HeldWorkers Hold(DaemonRunner daemon) => new(daemon.Services.GetRequiredService<ModelAtStart>().Active);

    /// <summary>Lets the workers go on and waits until the swap is over.</summary>
    public async Task ReleaseAsync()
    {
        _gate.Set();
        await _swap;
    }

    public void Dispose()
    {
        _gate.Set();
        _gate.Dispose();
    }
}
