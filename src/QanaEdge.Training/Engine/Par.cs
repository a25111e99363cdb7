namespace QanaEdge.Training.Engine;

/// <summary>
/// Data parallelism over the batch. The batch is cut into a fixed number of contiguous chunks that
/// does not depend on the core count; each chunk writes its own gradient buffers and the buffers are
/// reduced in chunk order, so results are identical on 1, 2 or 64 cores.
/// </summary>
public static class Par
{
    /// <summary>Chunks per batch (upper bound); more chunks than cores only helps load balance.</summary>
    public const int MaxChunks = 8;

    private static ParallelOptions _options = new() { MaxDegreeOfParallelism = Environment.ProcessorCount };

    /// <summary>Worker threads used by every parallel loop (default: all cores).</summary>
    public static int Threads
    {
        get => _options.MaxDegreeOfParallelism;
        set => _options = new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, value) };
    }

    public static int ChunkCount(int n) => Math.Min(n, MaxChunks);

    /// <summary>Runs body(chunk, start, end) for each chunk of [0, n).</summary>
    public static void For(int n, Action<int, int, int> body)
    {
        int chunks = ChunkCount(n);
        if (chunks <= 1 || Threads == 1)
        {
            for (int c = 0; c < chunks; c++) body(c, c * n / chunks, (c + 1) * n / chunks);
            return;
        }
        Parallel.For(0, chunks, _options, c => body(c, c * n / chunks, (c + 1) * n / chunks));
    }

    /// <summary>Runs body(i) for i in [0, count) in parallel (no gradient buffers involved).</summary>
    public static void ForEach(int count, Action<int> body)
    {
        if (count <= 1 || Threads == 1) { for (int i = 0; i < count; i++) body(i); return; }
        Parallel.For(0, count, _options, body);
    }
}
