using System.Globalization;

namespace QanaEdge.Training.Pipeline;

/// <summary>How long a run took or has left, as the training log, its report and the ablation table print it.</summary>
public static class Durations
{
    /// <summary>
    /// hh:mm:ss with the hours counted whole. The hh of a TimeSpan format is the hours of the day and wraps at 24: a
    /// full schedule on a slow board that ran 25 hours read "01:00:00".
    /// </summary>
    public static string Clock(TimeSpan t) =>
        string.Create(CultureInfo.InvariantCulture, $"{(long)t.TotalHours:D2}:{t.Minutes:D2}:{t.Seconds:D2}");
}
