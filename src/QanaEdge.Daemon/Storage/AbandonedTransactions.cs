using System.Collections;
using System.Reflection;
using System.Runtime.CompilerServices;
using LiteDB;
using LiteDB.Engine;

namespace QanaEdge.Daemon.Storage;

/// <summary>
/// Keeps LiteDB 5.0.x from ending the process after a disk failure. A transaction that a failed write left open is
/// eventually finalized on the GC's finalizer thread, and its finalizer runs the whole dispose, which can throw there
/// (`discarded page must be writable`; LiteDB issues #2828 and #2574, fixed only in the 6.x prereleases, which the
/// package feed does not serve) and so terminate the process, long after the failure. <see cref="ResultStore"/> closes
/// such an instance and never uses it again, so its transactions' finalizers have nothing left to do: they are
/// suppressed before the instance is closed. LiteDB exposes neither the transactions nor their monitor, hence the
/// accessors below, checked against the referenced LiteDB by a test.
/// </summary>
public static class AbandonedTransactions
{
    /// <summary>
    /// Suppresses the finalizers of every transaction still open on <paramref name="db"/>. Returns how many there were,
    /// or -1 when this LiteDB's internals are not the ones expected (then nothing is done).
    /// </summary>
    public static int SuppressFinalizers(LiteDatabase db)
    {
        try
        {
            if (MonitorField is null || EngineOf(db) is not LiteEngine engine || MonitorField.GetValue(engine) is not { } monitor) return -1;
            int n = 0;
            foreach (object transaction in (IEnumerable)TransactionsOf(monitor))
            {
                GC.SuppressFinalize(transaction);
                n++;
            }
            return n;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // Best effort: a LiteDB whose internals differ (missing member, type load, cast) must not turn the disk
            // failure being handled into another error.
            return -1;
        }
    }

    private static readonly FieldInfo? MonitorField = typeof(LiteEngine).GetField("_monitor", BindingFlags.NonPublic | BindingFlags.Instance);

    [UnsafeAccessor(UnsafeAccessorKind.Field, Name = "_engine")]
    private static extern ref ILiteEngine EngineOf(LiteDatabase db);

    [UnsafeAccessor(UnsafeAccessorKind.Method, Name = "get_Transactions")]
    [return: UnsafeAccessorType("System.Collections.Generic.ICollection`1[[LiteDB.Engine.TransactionService, LiteDB]]")]
    private static extern object TransactionsOf([UnsafeAccessorType("LiteDB.Engine.TransactionMonitor, LiteDB")] object monitor);
}
