namespace QanaEdge.Akida;

/// <summary>Status codes of native/akida/qana_akida.h.</summary>
public enum AkidaStatus
{
    Ok = 0,
    Argument = -1,
    Device = -2,
    Program = -3,
    State = -4,
    Shape = -5,
    Busy = -6,
    Unsupported = -7,
}

/// <summary>A call the Akida library refused: its status and the device's own message.</summary>
public sealed class AkidaException(AkidaStatus status, string message, Exception? inner = null) : Exception(message, inner)
{
    public AkidaStatus Status { get; } = status;

    /// <summary>Thrown by qana_akida_program itself (set by <see cref="AkidaDevice.Program"/>).</summary>
    public bool FromProgram { get; init; }

    /// <summary>
    /// The card refused the program for what it is (its format, or the chip's constraints: Program or Unsupported
    /// from qana_akida_program), as opposed to a fault of the card (Device, Busy, State ...) or of the call. The same
    /// program is refused again however often it is tried; a fault may pass. Unsupported from opening (a library
    /// that does not load, another ABI version) is no verdict on the model, so only programming counts.
    /// </summary>
    public bool RefusesTheModel => FromProgram && Status is AkidaStatus.Program or AkidaStatus.Unsupported;
}
