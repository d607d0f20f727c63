using System.Globalization;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.Peft.Sweep;

/// <summary>
/// The refit (<see cref="PeftSweep.SetRefit"/>): once the search ends, the best configurations train again, each for
/// an equal share of the time the search left, and may replace the best model. On all the data they are cross-fitted,
/// kept aside and become the best model together.
/// </summary>
internal sealed class RefitPhase(SweepRun run, TrialEvaluator evaluator, EnsemblePhase ensembles)
{
    private readonly SweepSettings _settings = run.Settings;
    // Refits on all the data cannot be ranked on validation rows they trained on: they are kept aside and become the
    // best model together.
    private readonly List<TrainedModel> _onAllData = [];

    public async Task RunAsync(SearchOutcome search, CancellationToken cancellationToken)
    {
        double seconds = _settings.Seconds!.Value;
        var configurations = Configurations(_settings, run.Trials, _settings.RefitCount);
        // Several refits on all the data are cross-fitted: refit k holds out the k-th fold of the validation rows.
        int[]? folds = _settings.RefitOnAllData
            ? CrossFitFolds(RowMaskDataView.CountRows(_settings.Validation!), configurations.Count) : null;
        // The reserve starts now. It is its planned share of the budget when the search ran out of trials early, and
        // all the rest of the budget when the search ended on time or skipped a trial that would not have finished.
        double reserveEnd = search.CutShort ? seconds
            : Math.Min(seconds, run.Clock.Elapsed.TotalSeconds + _settings.RefitFraction!.Value * seconds);
        for (int k = 0; k < configurations.Count && !cancellationToken.IsCancellationRequested; k++)
        {
            // An equal share of what is left of the reserve, so that a refit that runs over shortens the next ones.
            double left = seconds - run.Clock.Elapsed.TotalSeconds;
            double refitSeconds = (reserveEnd - run.Clock.Elapsed.TotalSeconds) / (configurations.Count - k);
            if (refitSeconds < 1) break;
            bool[]? heldOut = folds?.Select(f => f == k).ToArray();
            await RefitAsync(configurations[k], k, configurations.Count, heldOut, refitSeconds, left, search.Scores,
                cancellationToken).ConfigureAwait(false);
        }
        if (_onAllData.Count == 1) run.Models.Adopt(_onAllData[0].Result, _onAllData[0].Model);
        else if (_onAllData.Count > 1) AverageOnAllData(folds is not null);
    }

    /// <summary>
    /// A refit on all the data trained longer, on more rows, than the trial it repeats, so on the same validation rows
    /// it should do at least as well: on its held-out fold when cross-fitted, and on rows it trained on otherwise.
    /// Doing worse means its longer training went wrong (a learning rate that suits one epoch and not ten, say).
    /// </summary>
    internal static bool TrainedWorse(PeftMetric metric, double refitMetric, double trialMetric) =>
        !(metric.ToLoss(refitMetric) <= metric.ToLoss(trialMetric));

    /// <summary>
    /// The cross-fitting folds of <paramref name="rows"/> validation rows for <paramref name="refits"/> refits on all
    /// the data (row → fold, from a fixed seed, fold sizes differing by at most one); null for a single refit or
    /// fewer than two rows a fold, when the refits train on all the validation rows instead.
    /// </summary>
    internal static int[]? CrossFitFolds(int rows, int refits)
    {
        if (refits < 2 || rows < 2 * refits) return null;
        var order = Enumerable.Range(0, rows).ToArray();
        new Random(0).Shuffle(order);
        var folds = new int[rows];
        for (int i = 0; i < rows; i++) folds[order[i]] = i % refits;
        return folds;
    }

    /// <summary>
    /// The best succeeded trials with distinct configurations, best first, repeated in order when there are fewer than
    /// <paramref name="count"/>; with <see cref="SweepSettings.RefitKeepsDefault"/> and a count of two or more the
    /// default configuration, when it ran, takes the last place unless it is already chosen.
    /// </summary>
    internal static IReadOnlyList<TrialResult> Configurations(SweepSettings settings, IReadOnlyList<TrialResult> trials,
        int count)
    {
        var distinct = trials.Where(t => t.Status == TrialStatus.Succeeded && !t.Refit && t.Ensemble.Count == 0)
            .OrderBy(settings.Rank).ThenBy(t => t.Duration).ThenBy(t => t.Id)
            .DistinctBy(t => WithoutEpochs(t.Parameters))
            .ToList();
        if (distinct.Count == 0) return [];
        var chosen = Enumerable.Range(0, count).Select(i => distinct[i % distinct.Count]).ToList();
        if (settings.RefitKeepsDefault && count >= 2)
        {
            string start = WithoutEpochs(PeftTuner.Defaults(settings.Space, settings.Space.Methods[0]));
            if (distinct.FirstOrDefault(t => WithoutEpochs(t.Parameters) == start) is { } defaults
                && !chosen.Contains(defaults))
                chosen[count - 1] = defaults;
        }
        return chosen;

        // A refit sets its own epochs, so trials that differ only in epochs are one configuration.
        static string WithoutEpochs(TrialParameters p) => new TrialParameters(p.Method,
            p.Values.Where(v => v.Key != nameof(PeftTextOptions.Epochs)).ToDictionary()).ToJson();
    }

    private async Task RefitAsync(TrialResult source, int k, int count, bool[]? heldOut, double refitSeconds,
        double left, IReadOnlyDictionary<int, ValidationScores> trialScores, CancellationToken cancellationToken)
    {
        bool onAllData = _settings.RefitOnAllData;
        int id = run.Trials.Count;
        var parameters = source.Parameters;
        run.Log.Info($"Refit {id}: trial {source.Id}'s configuration for {refitSeconds:F0} s, "
            + (!onAllData ? "keeping its best validation epoch."
            : heldOut is null ? "on the training and validation rows, keeping its last epoch."
            : $"on the training rows and validation folds other than {k + 1} of {count}, keeping its best epoch on "
                + $"fold {k + 1}."));
        run.Notify(SweepEventKind.TrialStarted, id, parameters, null, run.Models.Best);
        using var refitCancel = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        refitCancel.CancelAfter(TimeSpan.FromSeconds(left));
        // Most of the time trains; the rest covers per-epoch and final validation scoring.
        var trainTime = TimeSpan.FromSeconds(refitSeconds * 0.9);
        var (result, model, scores) = await TrialRunner.RunAsync(id, parameters,
            (p, _, ct) => evaluator.Refit(p, trainTime, onAllData, heldOut, ct), new TrialReporter(id, null),
            refitCancel.Token).ConfigureAwait(false);
        result = result with { Refit = true, TrainedOnValidation = onAllData && heldOut is null };
        if (onAllData && result.Status == TrialStatus.Succeeded)
            result = CheckAgainstTrial(result, source, heldOut, trialScores);
        run.Trials.Add(result);
        if (onAllData)
        {
            if (result.Status == TrialStatus.Succeeded) _onAllData.Add(new TrainedModel(result, model!, scores!));
            else run.Models.Release(model);
        }
        else
        {
            if (result.Status == TrialStatus.Succeeded
                && _settings.Rank(result).CompareTo(_settings.Rank(run.Models.Best!)) <= 0)
                run.Models.Adopt(result, model);
            run.Models.Offer(result, model, scores);
            run.Models.Release(model);
        }
        Runtime.NativeHeap.Release();
        run.Log.Info(string.Format(CultureInfo.InvariantCulture,
            "Refit {0} {1}: {2} {3:F4}{4} in {5:F1} s{6}; best: {7}",
            id, result.Status, _settings.Metric, result.Metric,
            result.TrainedOnValidation ? " (in-sample)" : heldOut is null ? "" : " (held-out fold)",
            result.Duration.TotalSeconds, result.Error is null ? "" : $" ({result.Error})",
            SweepRun.Describe(run.Models.Best!)));
        run.Notify(SweepEventKind.TrialEnded, id, parameters, result, run.Models.Best);
    }

    // Drops a refit on all the data that trained worse than its trial (see TrainedWorse).
    private TrialResult CheckAgainstTrial(TrialResult result, TrialResult source, bool[]? heldOut,
        IReadOnlyDictionary<int, ValidationScores> trialScores)
    {
        var metric = _settings.Metric;
        // The trial's metric on the same rows: its fold when cross-fitted (all rows when replayed from a checkpoint,
        // whose scores were not kept).
        double trialMetric = heldOut is not null && trialScores.TryGetValue(source.Id, out var sourceScores)
            ? sourceScores.Where(heldOut).Compute(metric) : source.Metric;
        if (!TrainedWorse(metric, result.Metric, trialMetric)) return result;
        return result with
        {
            Status = TrialStatus.Failed,
            Error = string.Create(CultureInfo.InvariantCulture, $"Dropped: {metric} {result.Metric:F4} on "
                + $"{(heldOut is null ? "validation rows it trained on" : "its held-out fold of the validation rows")}"
                + $", worse than trial {source.Id}'s {trialMetric:F4} "
                + $"{(heldOut is null ? "with them held out" : "on the same rows")}"
                + $", so its longer training went wrong."),
        };
    }

    // Equal weights: no rows are held out from all of them to choose weights on. Cross-fitted, the ensemble's metric
    // is that of the out-of-fold scores (each validation row scored by the refit that held it out), as a
    // cross-validated trial's; otherwise it is in-sample.
    private void AverageOnAllData(bool crossFitted)
    {
        var outOfFold = crossFitted ? ValidationScores.Concat([.. _onAllData.Select(m => m.Scores)]) : null;
        var (result, model, members) = ensembles.Build(_onAllData, [.. _onAllData.Select(_ => 1.0)], TimeSpan.Zero,
            outOfFold);
        ensembles.Add(result with { TrainedOnValidation = !crossFitted }, model);
        run.Log.Info($"Ensemble {run.Trials[^1].Id} of the refits on all the data ({members}) is the best model"
            + (!crossFitted ? "." : string.Create(CultureInfo.InvariantCulture,
                $"; {_settings.Metric} of their out-of-fold scores {result.Metric:F4}.")));
    }
}
