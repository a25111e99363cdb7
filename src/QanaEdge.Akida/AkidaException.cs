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
}
