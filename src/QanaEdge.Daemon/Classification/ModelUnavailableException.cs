namespace QanaEdge.Daemon.Classification;

/// <summary>No usable model: missing, unreadable or refused. The daemon says so in one line and exits non-zero.</summary>
public sealed class ModelUnavailableException(string message, Exception? inner = null) : Exception(message, inner);
