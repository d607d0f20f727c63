using System.Globalization;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.Peft.Sweep;

/// <summary>What the search leaves to the refit.</summary>
/// <param name="CutShort">
/// The search ended because its next trial would not have finished in time: the refits then get that time too.
/// </param>
/// <param name="Scores">
/// Every succeeded trial's validation scores by id, so that a cross-fitted refit can be checked on its fold (a few
/// floats a row).
/// </param>
internal sealed record SearchOutcome(bool CutShort, IReadOnlyDictionary<int, ValidationScores> Scores);

/// <summary>
/// The search loop: the tuner proposes a point, a trial runs it (or the checkpoint replays it) and the tuner hears the
/// result, until the trial count, the search's share of the time budget, the tuner or the caller ends it.
/// </summary>
internal sealed class SearchPhase(SweepRun run, TrialEvaluator? evaluator)
{
    private readonly SweepSettings _settings = run.Settings;
    private readonly Func<TrialParameters, TrialReporter, CancellationToken, TrialOutcome> _evaluate =
        run.Settings.Evaluate ?? evaluator!.Evaluate;
    private readonly SuccessiveHalving? _halving = run.Settings.Halving is { } h
        ? new SuccessiveHalving(h.ReductionFactor, h.MinEpochs) : null;
    private readonly Dictionary<int, ValidationScores> _scores = [];

    public async Task<SearchOutcome> RunAsync(CancellationToken cancellationToken)
    {
        for (int id = 0; ; id++)
        {
            if (_settings.MaxTrials is { } max && id >= max) break;
            if (cancellationToken.IsCancellationRequested) { run.Log.Info("Sweep cancelled."); break; }
            double? left = _settings.SearchSeconds is { } budget ? budget - run.Clock.Elapsed.TotalSeconds : null;
            if (left <= 0) break;
            var parameters = _settings.Tuner.Propose();
            if (parameters is null) { run.Log.Info("The tuner has nothing more to try."); break; }

            TrialResult result;
            ITransformer? model = null;
            ValidationScores? scores = null;
            if (run.Checkpoint?.TryTake(parameters, out var recorded) == true)
            {
                result = recorded with { Id = id };
                _halving?.Replay(result.EpochLosses);
                run.Log.Info($"Trial {id}: replayed from the checkpoint ({result.Status}, "
                    + $"{_settings.Metric} {result.Metric:F4}).");
            }
            else if (WouldOutlastTheSearch(id, parameters, left))
                return new SearchOutcome(CutShort: true, _scores);
            else
            {
                run.Log.Info($"Trial {id} starts: {parameters.ToJson()}");
                run.Notify(SweepEventKind.TrialStarted, id, parameters, null, run.Models.Best);
                using var trialCancel = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                if (left is { } l) trialCancel.CancelAfter(TimeSpan.FromSeconds(l));
                (result, model, scores) = await TrialRunner.RunAsync(id, parameters, _evaluate,
                    new TrialReporter(id, _halving), trialCancel.Token).ConfigureAwait(false);
            }

            Record(parameters, result, model, scores);
            if (result.Status == TrialStatus.Cancelled) break;
        }
        return new SearchOutcome(CutShort: false, _scores);
    }

    /// <summary>
    /// How long a search trial of <paramref name="next"/> should take: the median seconds per epoch of the succeeded
    /// search trials so far times its epochs (a point without <c>Epochs</c> counts as one); null before any succeeded.
    /// </summary>
    internal static double? ExpectedSeconds(IReadOnlyList<TrialResult> trials, TrialParameters next)
    {
        var perEpoch = trials.Where(t => t.Status == TrialStatus.Succeeded && !t.Refit && t.Ensemble.Count == 0)
            .Select(t => t.Duration.TotalSeconds / Epochs(t.Parameters)).Order().ToList();
        if (perEpoch.Count == 0) return null;
        int middle = perEpoch.Count / 2;
        double median = perEpoch.Count % 2 == 1 ? perEpoch[middle] : (perEpoch[middle - 1] + perEpoch[middle]) / 2;
        return median * Epochs(next);

        static double Epochs(TrialParameters p) =>
            p.Values.TryGetValue(nameof(PeftTextOptions.Epochs), out var e)
                ? Math.Max(1, Convert.ToDouble(e, CultureInfo.InvariantCulture)) : 1;
    }

    // A trial still running when the search's time ends is cancelled and its time lost; with a refit to come, that
    // time is better spent there.
    private bool WouldOutlastTheSearch(int id, TrialParameters parameters, double? left)
    {
        if (_settings.RefitFraction is null || left is not { } searchLeft
            || ExpectedSeconds(run.Trials, parameters) is not { } expected || !(expected > searchLeft)) return false;
        run.Log.Info(string.Create(CultureInfo.InvariantCulture, $"Trial {id} not started: it would take about "
            + $"{expected:F0} s and the search has {searchLeft:F0} s left; the refits start now."));
        return true;
    }

    private void Record(TrialParameters parameters, TrialResult result, ITransformer? model, ValidationScores? scores)
    {
        var best = run.Models.Best;
        run.Trials.Add(result);
        if (result.Status != TrialStatus.Cancelled)
            _settings.Tuner.Report(parameters,
                result.Status == TrialStatus.Succeeded ? TunerLoss(_settings, result) : double.PositiveInfinity,
                result.Duration);
        if (scores is not null) _scores[result.Id] = scores;
        if (result.Status == TrialStatus.Succeeded && (best is null || _settings.IsBetter(result, best)))
            run.Models.Adopt(result, model);
        run.Models.Offer(result, model, scores);
        // A model that is neither the best nor an ensemble candidate is never returned: free its native tensors now
        // rather than when the GC gets to them.
        run.Models.Release(model);
        // What the trial freed goes back to the OS, or the sweep's memory grows with every trial (see NativeHeap).
        Runtime.NativeHeap.Release();
        if (!result.FromCheckpoint && result.Status != TrialStatus.Cancelled) run.Checkpoint?.Append(result);
        best = run.Models.Best;
        run.Log.Info(string.Format(CultureInfo.InvariantCulture,
            "Trial {0} {1}: {2} {3:F4} in {4:F1} s{5}; best so far: {6}",
            result.Id, result.Status, _settings.Metric, result.Metric, result.Duration.TotalSeconds,
            result.Error is null ? "" : $" ({result.Error})",
            best is null ? "none" : $"trial {best.Id} ({best.Metric:F4})"));
        run.Notify(SweepEventKind.TrialEnded, result.Id, parameters, result, best);
    }

    // What the tuner minimises: the metric, nudged by a millionth of the validation loss so that equal metrics
    // (accuracy at the majority class, say) still order the trials by how much they learned.
    internal static double TunerLoss(SweepSettings settings, TrialResult t) =>
        settings.Metric.ToLoss(t.Metric) + (double.IsFinite(t.ValidationLoss) ? 1e-6 * t.ValidationLoss : 0);
}
