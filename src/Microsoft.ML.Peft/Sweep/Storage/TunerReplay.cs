using static Microsoft.ML.Peft.Sweep.Storage.StudySchema;

namespace Microsoft.ML.Peft.Sweep.Storage;

/// <summary>
/// Rebuilds a tuner from a study's rows, so that whichever worker claims the next trial proposes what the study's
/// history implies. As a checkpoint's replay: the tuner is reset, then each trial it proposed is proposed again (which
/// advances its random state as the first time) and reported with its result, in trial order.
/// </summary>
internal static class TunerReplay
{
    /// <summary>The tuner's next point after every row; null when it has nothing more to try.</summary>
    /// <remarks>
    /// A trial still running (or waiting to rerun) is reported as a failure, Optuna's "constant liar": the tuner then
    /// moves away from the pending point rather than proposing it or its neighbour again, and once the trial ends
    /// the next replay reports its real loss. A lost trial that was retried stands for its retry (which the tuner
    /// never proposed) and takes that retry's result.
    /// </remarks>
    public static TrialParameters? Next(SweepSettings settings, IReadOnlyList<StoredTrial> rows)
    {
        var tuner = settings.Tuner;
        tuner.Reset(settings.Space);
        var byNumber = rows.ToDictionary(r => r.Number);
        foreach (var row in rows)
        {
            if (row.RetryOf is not null) continue;
            tuner.Propose();
            var last = row;
            while (last.RetriedBy is { } n && byNumber.TryGetValue(n, out var retry)) last = retry;
            double loss = last.State == Complete
                ? SearchPhase.TunerLoss(settings, last.ToResult()) : double.PositiveInfinity;
            tuner.Report(row.Parameters, loss, TimeSpan.FromSeconds(last.DurationSeconds));
        }
        return tuner.Propose();
    }
}
