namespace QanaEdge.Training.Data;

/// <summary>A data set, label file or split request that cannot be used, with the reason in the message.</summary>
public sealed class DatasetException : Exception
{
    public DatasetException(string message) : base(message) { }
    public DatasetException(string message, Exception inner) : base(message, inner) { }
}
