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
