namespace QanaEdge.Model.Packaging;

/// <summary>
/// A package (file, bytes or in-memory graph) violates the format or its validation rules. The message is
/// one line naming the offending part (header field, node, tensor or manifest field). The loader throws
/// only this type for bad input, so callers need one catch.
/// </summary>
public sealed class PackageFormatException : Exception
{
    public PackageFormatException(string message) : base(message) { }

    public PackageFormatException(string message, Exception inner) : base(message, inner) { }
}
