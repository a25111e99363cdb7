using QanaEdge.Training.Engine;

namespace QanaEdge.Training.Tests;

/// <summary>Tests that set the process-wide <see cref="Par.Threads"/> run one at a time, so that none of them runs
/// under another's setting (or restores a setting another left in place).</summary>
[CollectionDefinition(Name)]
public sealed class ParThreads
{
    public const string Name = "Par.Threads";
}
