using System.Collections.Concurrent;
using QanaEdge.Training.Data;
using QanaEdge.Training.Engine;
using QanaEdge.Training.Pipeline;

namespace QanaEdge.Training.Tests.Pipeline;

/// <summary>Decoding the data set keeps to the configured thread count (<see cref="Par.Threads"/>, <c>--threads</c>).</summary>
[Collection(ParThreads.Name)]
public sealed class LoadThreadsTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("qana-threads-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>With one thread allowed every file is decoded on the calling thread; a loop without the limit hands files
    /// to the thread pool's workers too (on a machine of one core the two cannot be told apart).</summary>
    [Fact]
    public void Loading_a_set_with_one_thread_decodes_every_file_on_one_thread()
    {
        // Files that are not images: each decode fails fast after reading its file, which is all the loop needs.
        var rows = Enumerable.Range(0, 16).Select(i =>
        {
            string path = Path.Combine(_dir, $"img{i}.jpg");
            File.WriteAllText(path, "not a picture");
            return new Ham10000Row($"img{i}", $"lesion{i}", "nv", 5, path);
        }).ToArray();
        var threads = new ConcurrentDictionary<int, int>();
        int saved = Par.Threads;
        // Pool threads ready at once (the test runner may hold the usual ones), so an unlimited loop gets its workers
        // without waiting for the pool to add threads.
        ThreadPool.GetMinThreads(out int minWorkers, out int minIo);
        ThreadPool.SetMinThreads(Math.Max(minWorkers, 8), minIo);
        Par.Threads = 1;
        ImageFiles.Decoding = path =>
        {
            if (!path.StartsWith(_dir, StringComparison.Ordinal)) return; // another test's files
            threads.AddOrUpdate(Environment.CurrentManagedThreadId, 1, (_, n) => n + 1);
            Thread.Sleep(20); // long enough for a second worker to join an unlimited loop
        };
        try
        {
            var e = Assert.Throws<DatasetException>(() => ImageSet.Load(rows, 16));
            Assert.StartsWith("16 of 16 images cannot be decoded", e.Message);
        }
        finally
        {
            ImageFiles.Decoding = null;
            Par.Threads = saved;
            ThreadPool.SetMinThreads(minWorkers, minIo);
        }
        Assert.Equal(16, Assert.Single(threads).Value);
    }
}
