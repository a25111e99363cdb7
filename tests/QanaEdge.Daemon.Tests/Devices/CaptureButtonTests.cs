using System.Device.Gpio;
using Microsoft.Extensions.Time.Testing;
using QanaEdge.Devices.Gpio;

namespace QanaEdge.Daemon.Tests.Devices;

public sealed class CaptureButtonTests
{
    /// <summary>A button on an emulated GPIO chip and the presses it has reported.</summary>
    private sealed class Rig : IDisposable
    {
        private int _presses;

        public Rig(int pin, TimeSpan debounce, bool ownsController = true)
        {
            Button = new CaptureButton(new GpioController(Driver), pin, debounce, ownsController, Time);
            Button.Pressed += () => Interlocked.Increment(ref _presses);
        }

        public EmulatedGpioDriver Driver { get; } = new();
        /// <summary>The button's clock: still unless the test moves it, so "within the debounce time" is exact.</summary>
        public FakeTimeProvider Time { get; } = new();
        public CaptureButton Button { get; }
        public int Presses => Volatile.Read(ref _presses);

        public void Dispose() => Button.Dispose();
    }

    [Fact]
    public void A_press_is_a_falling_edge_with_pull_up_and_bounces_are_ignored()
    {
        using var rig = new Rig(pin: 17, debounce: TimeSpan.FromSeconds(5));
        Assert.Equal(PinMode.InputPullUp, rig.Driver.ModeOf(17));

        rig.Driver.Drive(17, PinValue.Low);   // press
        rig.Driver.Drive(17, PinValue.High);  // bounce
        rig.Driver.Drive(17, PinValue.Low);   // bounce within the debounce time
        rig.Driver.Drive(17, PinValue.High);  // release
        Assert.Equal(1, rig.Presses);
    }

    /// <summary>
    /// A press held longer than the debounce time, then a release that bounces: the bounce's falling edge comes long
    /// after the press but right after the line went high, and is not a second press; nor is one after the line was
    /// high for a millisecond less than the debounce time. A press after the line stayed high for it counts.
    /// </summary>
    [Fact]
    public void A_release_that_bounces_after_a_long_hold_is_not_a_second_press()
    {
        using var rig = new Rig(pin: 5, debounce: TimeSpan.FromMilliseconds(300));

        rig.Driver.Drive(5, PinValue.Low);    // press
        rig.Time.Advance(TimeSpan.FromMilliseconds(600));   // held
        rig.Driver.Drive(5, PinValue.High);   // release
        rig.Driver.Drive(5, PinValue.Low);    // release bounce
        rig.Driver.Drive(5, PinValue.High);
        Assert.Equal(1, rig.Presses);

        rig.Time.Advance(TimeSpan.FromMilliseconds(299));   // high for 1 ms less than the debounce time
        rig.Driver.Drive(5, PinValue.Low);    // a late bounce
        rig.Driver.Drive(5, PinValue.High);
        Assert.Equal(1, rig.Presses);

        rig.Time.Advance(TimeSpan.FromMilliseconds(300));   // the line stays high for the debounce time
        rig.Driver.Drive(5, PinValue.Low);    // the next press
        rig.Driver.Drive(5, PinValue.High);
        Assert.Equal(2, rig.Presses);
    }

    [Fact]
    public void Separate_presses_after_the_debounce_time_each_count_and_dispose_unregisters()
    {
        var rig = new Rig(pin: 4, debounce: TimeSpan.Zero, ownsController: false);
        for (int i = 0; i < 3; i++) { rig.Driver.Drive(4, PinValue.Low); rig.Driver.Drive(4, PinValue.High); }
        Assert.Equal(3, rig.Presses);
        rig.Dispose();
        Assert.Equal(0, rig.Driver.Callbacks);
    }
}
