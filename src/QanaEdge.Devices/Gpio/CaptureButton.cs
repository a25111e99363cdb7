using System.Device.Gpio;

namespace QanaEdge.Devices.Gpio;

/// <summary>
/// A push button on a GPIO line, wired active-low with the internal pull-up: a press is a falling edge.
/// Bounces within <see cref="Debounce"/> of an accepted press are ignored. The <see cref="GpioController"/> is the
/// test seam (tests build it on an emulated <see cref="GpioDriver"/>).
/// </summary>
public sealed class CaptureButton : IDisposable
{
    private readonly GpioController _controller;
    private readonly int _pin;
    private readonly bool _ownsController;
    private long _lastPressTicks = long.MinValue;

    public CaptureButton(GpioController controller, int pin, TimeSpan debounce, bool ownsController = true)
    {
        ArgumentNullException.ThrowIfNull(controller);
        _controller = controller;
        _pin = pin;
        _ownsController = ownsController;
        Debounce = debounce;
        PinMode mode = controller.IsPinModeSupported(pin, PinMode.InputPullUp) ? PinMode.InputPullUp : PinMode.Input;
        controller.OpenPin(pin, mode);
        controller.RegisterCallbackForPinValueChangedEvent(pin, PinEventTypes.Falling, OnEdge);
    }

    public TimeSpan Debounce { get; }

    /// <summary>Raised on the driver's event thread for each accepted press.</summary>
    public event Action? Pressed;

    private void OnEdge(object sender, PinValueChangedEventArgs e)
    {
        long now = Environment.TickCount64;
        long last = Interlocked.Read(ref _lastPressTicks);
        if (last != long.MinValue && now - last < Debounce.TotalMilliseconds) return;
        Interlocked.Exchange(ref _lastPressTicks, now);
        Pressed?.Invoke();
    }

    public void Dispose()
    {
        _controller.UnregisterCallbackForPinValueChangedEvent(_pin, OnEdge);
        if (_controller.IsPinOpen(_pin)) _controller.ClosePin(_pin);
        if (_ownsController) _controller.Dispose();
    }
}
