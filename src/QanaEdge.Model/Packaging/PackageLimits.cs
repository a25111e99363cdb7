namespace QanaEdge.Model.Packaging;

/// <summary>
/// Upper bounds the loader enforces before it allocates anything, so that a hostile file cannot make a
/// small board allocate gigabytes or loop for minutes. The QANA network (64×64 input, ~0.2 M parameters,
/// ~100 nodes) sits far below every one of them.
/// </summary>
public static class PackageLimits
{
    /// <summary>Largest manifest + graph JSON, in bytes.</summary>
    public const int MaxJsonBytes = 32 << 20;
    /// <summary>Largest weight blob, in bytes.</summary>
    public const int MaxBlobBytes = 64 << 20;
    /// <summary>Largest package file (header, JSON, blob, checksum, signature).</summary>
    public const long MaxFileBytes = (long)PackageFormat.HeaderSize + MaxJsonBytes + MaxBlobBytes
        + PackageFormat.ChecksumSize + PackageFormat.SignatureBlockSize;
    public const int MaxTensors = 4096;
    public const int MaxNodes = 2048;
    /// <summary>Largest single tensor (elements): 4 Mi, e.g. 512×512×16.</summary>
    public const long MaxTensorElements = 1 << 22;
    /// <summary>Sum over all tensors (elements): bounds the engine's activation arena.</summary>
    public const long MaxTotalTensorElements = 1 << 25;
    /// <summary>Most multiply-accumulates of one run (Σ over weighted nodes of weights × output positions): bounds the
    /// time an image takes. The shipped QANA network needs 46.8 M; a 0.6 MB package of one 31×31 convolution on
    /// 126×126×24 needed 8.8 G, 3 s per image on an AVX-512 machine and minutes on a board.</summary>
    public const long MaxMacs = 1L << 31;
    public const int MaxNodeInputs = 64;
    public const int MaxKernelSize = 31;
    public const int MaxStride = 16;
    public const int MaxTimeSteps = 1 << 16;
    /// <summary>Most classes (logits) a graph may have. Small, so that the engines keep per-class scratch
    /// on the stack (256 doubles = 2 KiB).</summary>
    public const int MaxClasses = 256;
    public const int MaxGoldenVectors = 64;
    public const int MaxNameLength = 256;
    /// <summary>Most entries of the manifest's <c>metrics</c> and <c>provenance</c>.</summary>
    public const int MaxMapEntries = 1024;
}
