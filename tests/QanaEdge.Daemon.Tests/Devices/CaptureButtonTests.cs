using System.Device.Gpio;
using QanaEdge.Devices.Gpio;

namespace QanaEdge.Daemon.Tests.Devices;

public sealed class CaptureButtonTests
{
    [Fact]
    public void A_press_is_a_falling_edge_with_pull_up_and_bounces_are_ignored()
    {
        var driver = new EmulatedGpioDriver();
        using var button = new CaptureButton(new GpioController(driver), pin: 17, debounce: TimeSpan.FromSeconds(5));
        int presses = 0;
        button.Pressed += () => presses++;
        Assert.Equal(PinMode.InputPullUp, driver.ModeOf(17));

        driver.Drive(17, PinValue.Low);   // press
        driver.Drive(17, PinValue.High);  // bounce
        driver.Drive(17, PinValue.Low);   // bounce within the debounce time
        driver.Drive(17, PinValue.High);  // release
        Assert.Equal(1, presses);
    }

    /// <summary>
    /// A press held longer than the debounce time, then a release that bounces: the bounce's falling edge comes long
    /// after the press but right after the line went high, and is not a second press. A press after the line stayed
    /// high for the debounce time counts.
    /// </summary>
    [Fact]
    public void A_release_that_bounces_after_a_long_hold_is_not_a_second_press()
    {
        var driver = new EmulatedGpioDriver();
        using var button = new CaptureButton(new GpioController(driver), pin: 5, debounce: TimeSpan.FromMilliseconds(300));
        int presses = 0;
        button.Pressed += () => presses++;

        driver.Drive(5, PinValue.Low);    // press
        Thread.Sleep(600);                // held
        driver.Drive(5, PinValue.High);   // release
        driver.Drive(5, PinValue.Low);    // release bounce
        driver.Drive(5, PinValue.High);
        Assert.Equal(1, presses);

        Thread.Sleep(600);                // the line stays high
        driver.Drive(5, PinValue.Low);    // the next press
        driver.Drive(5, PinValue.High);
        Assert.Equal(2, presses);
    }

    [Fact]
    public void Separate_presses_after_the_debounce_time_each_count_and_dispose_unregisters()
    {
        var driver = new EmulatedGpioDriver();
        var button = new CaptureButton(new GpioController(driver), pin: 4, debounce: TimeSpan.Zero, ownsController: false);
        int presses = 0;
        button.Pressed += () => presses++;
        for (int i = 0; i < 3; i++) { driver.Drive(4, PinValue.Low); driver.Drive(4, PinValue.High); }
        Assert.Equal(3, presses);
        button.Dispose();
        Assert.Equal(0, driver.Callbacks);
    }
}
