using System.Device.Gpio;

namespace QanaEdge.Devices.Gpio;

/// <summary>
/// A push button on a GPIO line, wired active-low with the internal pull-up: a press is a falling edge.
/// A falling edge counts only when the line had been high for <see cref="Debounce"/> before it, and no press was
/// accepted within <see cref="Debounce"/>: a switch bounces when it is released too, and a release bounce comes
/// after a hold longer than the debounce time, so a filter on the last press alone took a second capture for one
/// press. The <see cref="GpioController"/> is the test seam (tests build it on an emulated <see cref="GpioDriver"/>).
/// </summary>
public sealed class CaptureButton : IDisposable
{
    private readonly GpioController _controller;
    private readonly int _pin;
    private readonly bool _ownsController;
    private long _lastPressTicks = long.MinValue;
    private long _lastRiseTicks = long.MinValue;

    public CaptureButton(GpioController controller, int pin, TimeSpan debounce, bool ownsController = true)
    {
        ArgumentNullException.ThrowIfNull(controller);
        _controller = controller;
        _pin = pin;
        _ownsController = ownsController;
        Debounce = debounce;
        try
        {
            PinMode mode = controller.IsPinModeSupported(pin, PinMode.InputPullUp) ? PinMode.InputPullUp : PinMode.Input;
            controller.OpenPin(pin, mode);
            controller.RegisterCallbackForPinValueChangedEvent(pin, PinEventTypes.Falling | PinEventTypes.Rising, OnEdge);
        }
        catch
        {
            // A line another process holds fails its request after the pin was opened: no button exists for the caller
            // to dispose, so the pin (and the chip, when it is ours) is closed here rather than held until exit.
            if (controller.IsPinOpen(pin)) controller.ClosePin(pin);
            if (ownsController) controller.Dispose();
            throw;
        }
    }

    public TimeSpan Debounce { get; }

    /// <summary>Raised on the driver's event thread for each accepted press.</summary>
    public event Action? Pressed;

    private void OnEdge(object sender, PinValueChangedEventArgs e)
    {
        long now = Environment.TickCount64;
        if (e.ChangeType == PinEventTypes.Rising)
        {
            Interlocked.Exchange(ref _lastRiseTicks, now);
            return;
        }
        if (!LongAgo(Interlocked.Read(ref _lastRiseTicks), now) || !LongAgo(Interlocked.Read(ref _lastPressTicks), now)) return;
        Interlocked.Exchange(ref _lastPressTicks, now);
        Pressed?.Invoke();
    }

    private bool LongAgo(long then, long now) => then == long.MinValue || now - then >= Debounce.TotalMilliseconds;

    public void Dispose()
    {
        _controller.UnregisterCallbackForPinValueChangedEvent(_pin, OnEdge);
        if (_controller.IsPinOpen(_pin)) _controller.ClosePin(_pin);
        if (_ownsController) _controller.Dispose();
    }
}
