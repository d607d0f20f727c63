using System.Diagnostics;

namespace Microsoft.ML.Peft.Sweep;

/// <summary>
/// Runs one evaluation of a point (a search trial or a refit) off the caller's thread and turns what it returns or
/// throws into a leaderboard row: a failed, pruned or cancelled trial is a result, not an exception, so the sweep goes
/// on.
/// </summary>
internal static class TrialRunner
{
    /// <summary>The row, and the model and validation scores when the trial succeeded.</summary>
    public static async Task<(TrialResult Result, ITransformer? Model, ValidationScores? Scores)> RunAsync(int id,
        TrialParameters parameters, Func<TrialParameters, TrialReporter, CancellationToken, TrialOutcome> evaluate,
        TrialReporter reporter, CancellationToken cancel)
    {
        var clock = Stopwatch.StartNew();
        try
        {
            var outcome = await Task.Run(() => evaluate(parameters, reporter, cancel), CancellationToken.None)
                .ConfigureAwait(false);
            clock.Stop();
            var result = new TrialResult
            {
                Id = id, Parameters = parameters, Duration = clock.Elapsed,
                TrainableParameters = outcome.TrainableParameters, PeakWorkingSetBytes = PeakWorkingSet(),
                Metric = outcome.Metric, EpochLosses = [.. reporter.EpochLosses],
                ValidationLoss = outcome.Validation?.TieBreakLoss() ?? double.NaN,
                Status = double.IsFinite(outcome.Metric) ? TrialStatus.Succeeded : TrialStatus.Failed,
                Error = double.IsFinite(outcome.Metric) ? null : $"The metric is {outcome.Metric}.",
            };
            bool ok = result.Status == TrialStatus.Succeeded;
            return (result, ok ? outcome.Model : null, ok ? outcome.Validation : null);
        }
        catch (Exception e) when (reporter.PrunedAtEpoch is not null)
        {
            var pruned = e as TrialPrunedException ?? FindPruned(e);
            return (Ended(TrialStatus.Pruned, pruned?.Message ?? e.Message, reporter.EpochLosses), null, null);
        }
        catch (Exception e) when (cancel.IsCancellationRequested)
        {
            return (Ended(TrialStatus.Cancelled, e.Message), null, null);
        }
        catch (Exception e)
        {
            return (Ended(TrialStatus.Failed, $"{e.GetType().Name}: {e.Message}", reporter.EpochLosses), null, null);
        }

        TrialResult Ended(TrialStatus status, string error, IEnumerable<double>? losses = null) => new()
        {
            Id = id, Parameters = parameters, Duration = clock.Elapsed, PeakWorkingSetBytes = PeakWorkingSet(),
            Status = status, Error = error, EpochLosses = losses is null ? [] : [.. losses],
        };
    }

    /// <summary>The process's peak working set so far, recorded with each row.</summary>
    public static long PeakWorkingSet()
    {
        using var p = Process.GetCurrentProcess();
        return p.PeakWorkingSet64;
    }

    private static TrialPrunedException? FindPruned(Exception e)
    {
        for (Exception? x = e; x is not null; x = x.InnerException)
            if (x is TrialPrunedException p) return p;
        return null;
    }
}
