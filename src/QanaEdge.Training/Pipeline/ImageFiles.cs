using System.Collections.Concurrent;
using QanaEdge.Imaging;
using QanaEdge.Training.Data;
using QanaEdge.Training.Engine;

namespace QanaEdge.Training.Pipeline;

/// <summary>
/// Decoding the data set's image files for training and evaluation: a file that cannot be read or decoded is a
/// <see cref="DatasetException"/> naming it, and a parallel loop collects every such file into one exception
/// (<see cref="Failures"/>) instead of stopping at the first, which Parallel.For would wrap in an AggregateException.
/// </summary>
internal static class ImageFiles
{
    /// <summary>How many failed files a message names.</summary>
    public const int Listed = 5;

    /// <summary>Called with each path before it is decoded, on the decoding thread: a test seam that shows which threads a
    /// loop over the files used (null outside tests).</summary>
    internal static Action<string>? Decoding { get; set; }

    /// <summary>Decodes one file as the device does (<see cref="ImageDecoder.DecodeFile"/>: size limit first).</summary>
    /// <exception cref="DatasetException">The file cannot be read or is not an acceptable image.</exception>
    public static RgbImage Decode(string path)
    {
        Decoding?.Invoke(path);
        try { return ImageDecoder.DecodeFile(path); }
        catch (ImageRejectedException e) { throw new DatasetException($"{path}: {e.ReasonCode}: {e.Message}", e); }
        catch (IOException e) { throw new DatasetException($"{path}: cannot read ({e.Message})", e); }
        catch (UnauthorizedAccessException e) { throw new DatasetException($"{path}: cannot read ({e.Message})", e); }
    }

    /// <summary>Decodes every file in parallel and discards the pixels: whether a set can be used at all, checked
    /// before hours are spent on another one.</summary>
    /// <exception cref="DatasetException">Some files cannot be decoded; the message counts them and names the first few.</exception>
    public static void CheckDecodable(IReadOnlyList<string> paths, string what)
    {
        var failures = new Failures(paths.Count, what);
        Parallel.For(0, paths.Count, new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, Par.Threads) }, i =>
        {
            try { Decode(paths[i]); }
            catch (DatasetException e) { failures.Add(i, e.Message); }
        });
        failures.ThrowIfAny();
    }

    /// <summary>The files of one loop that could not be decoded, by their index; thread-safe.</summary>
    public sealed class Failures(int total, string what)
    {
        private readonly ConcurrentDictionary<int, string> _failed = new();

        public void Add(int index, string message) => _failed[index] = message;

        /// <summary>"N of M images cannot be decoded: first; second; ... (k more)", the files in index order.</summary>
        public void ThrowIfAny()
        {
            if (_failed.IsEmpty) return;
            var first = _failed.OrderBy(f => f.Key).Take(Listed).Select(f => f.Value);
            int n = _failed.Count;
            throw new DatasetException($"{n} of {total} {what} cannot be decoded: {string.Join("; ", first)}" +
                (n > Listed ? $"; ... ({n - Listed} more)" : ""));
        }
    }
}
