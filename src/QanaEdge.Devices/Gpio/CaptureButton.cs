using System.Device.Gpio;

namespace QanaEdge.Devices.Gpio;

/// <summary>
/// A push button on a GPIO line, wired active-low with the internal pull-up: a press is a falling edge.
/// A falling edge counts only when the line had been high for <see cref="Debounce"/> before it, and no press was
/// accepted within <see cref="Debounce"/>: a switch bounces when it is released too, and a release bounce comes
/// after a hold longer than the debounce time, so a filter on the last press alone took a second capture for one
/// press. The <see cref="GpioController"/> is the test seam (tests build it on an emulated <see cref="GpioDriver"/>),
/// and so is the clock the edges are timed by.
/// </summary>
public sealed class CaptureButton : IDisposable
{
    private readonly GpioController _controller;
    private readonly int _pin;
    private readonly bool _ownsController;
    private readonly TimeProvider _time;
    // Timestamps of the clock (TimeProvider.GetTimestamp), or long.MinValue before the first edge.
    private long _lastPress = long.MinValue;
    private long _lastRise = long.MinValue;

    /// <param name="time">The clock edges are timed by: the system's, or a test's.</param>
    public CaptureButton(GpioController controller, int pin, TimeSpan debounce, bool ownsController = true, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(controller);
        _controller = controller;
        _time = time ?? TimeProvider.System;
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
        long now = _time.GetTimestamp();
        if (e.ChangeType == PinEventTypes.Rising)
        {
            Interlocked.Exchange(ref _lastRise, now);
            return;
        }
        if (!LongAgo(Interlocked.Read(ref _lastRise), now) || !LongAgo(Interlocked.Read(ref _lastPress), now)) return;
        Interlocked.Exchange(ref _lastPress, now);
        Pressed?.Invoke();
    }

    private bool LongAgo(long then, long now) => then == long.MinValue || _time.GetElapsedTime(then, now) >= Debounce;

    public void Dispose()
    {
        _controller.UnregisterCallbackForPinValueChangedEvent(_pin, OnEdge);
        if (_controller.IsPinOpen(_pin)) _controller.ClosePin(_pin);
        if (_ownsController) _controller.Dispose();
    }
}
