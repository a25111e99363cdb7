using System.Device.Gpio;

namespace QanaEdge.Daemon.Tests.Devices;

/// <summary>
/// A GPIO chip emulated at the driver boundary: pins have a mode and a level, and a level change raises the edge
/// callbacks that were registered for it, as the kernel's line events do.
/// </summary>
public sealed class EmulatedGpioDriver : GpioDriver
{
    private readonly Dictionary<int, (PinMode Mode, PinValue Value)> _pins = [];
    private readonly List<(int Pin, PinEventTypes Types, PinChangeEventHandler Handler)> _callbacks = [];

    protected override int PinCount => 32;
    protected override void OpenPin(int pinNumber) => _pins[pinNumber] = (PinMode.Input, PinValue.High);
    protected override void ClosePin(int pinNumber) => _pins.Remove(pinNumber);
    protected override void SetPinMode(int pinNumber, PinMode mode)
    {
        // The line is requested with its mode, as libgpiod's driver does; a line another process holds is EBUSY.
        if (Busy.Contains(pinNumber)) throw new IOException($"Error {Ebusy} setting pin mode, for pin {pinNumber}");
        _pins[pinNumber] = (mode, mode == PinMode.InputPullUp ? PinValue.High : _pins[pinNumber].Value);
    }
    protected override PinMode GetPinMode(int pinNumber) => _pins[pinNumber].Mode;
    protected override bool IsPinModeSupported(int pinNumber, PinMode mode) => mode is PinMode.Input or PinMode.InputPullUp or PinMode.Output;
    protected override PinValue Read(int pinNumber) => _pins[pinNumber].Value;
    protected override void Write(int pinNumber, PinValue value) => _pins[pinNumber] = (_pins[pinNumber].Mode, value);
    protected override WaitForEventResult WaitForEvent(int pinNumber, PinEventTypes eventTypes, CancellationToken cancellationToken)
        => throw new NotSupportedException();
    protected override void AddCallbackForPinValueChangedEvent(int pinNumber, PinEventTypes eventTypes, PinChangeEventHandler callback)
        => _callbacks.Add((pinNumber, eventTypes, callback));
    protected override void RemoveCallbackForPinValueChangedEvent(int pinNumber, PinChangeEventHandler callback)
        => _callbacks.RemoveAll(c => c.Pin == pinNumber && c.Handler == callback);
    public override GpioChipInfo GetChipInfo() => throw new NotSupportedException();

    private const int Ebusy = 16;

    /// <summary>Lines another process holds (a request for them fails with EBUSY).</summary>
    public HashSet<int> Busy { get; } = [];

    /// <summary>The chip was closed (its controller disposed).</summary>
    public bool Disposed { get; private set; }

    protected override void Dispose(bool disposing)
    {
        Disposed = true;
        base.Dispose(disposing);
    }

    public PinMode ModeOf(int pin) => _pins[pin].Mode;
    public int Callbacks => _callbacks.Count;

    /// <summary>The outside world drives the line (the button pulls it low, the pull-up brings it back).</summary>
    public void Drive(int pin, PinValue level)
    {
        PinValue old = _pins[pin].Value;
        _pins[pin] = (_pins[pin].Mode, level);
        if (old == level) return;
        PinEventTypes edge = level == PinValue.Low ? PinEventTypes.Falling : PinEventTypes.Rising;
        foreach (var c in _callbacks.ToArray())
            if (c.Pin == pin && (c.Types & edge) != 0) c.Handler(this, new PinValueChangedEventArgs(edge, pin));
    }
}
