using System.Diagnostics;
using System.Globalization;
using Microsoft.ML.Data;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.Peft.Sweep;

/// <summary>
/// The ensemble (<see cref="PeftSweep.SetEnsemble"/>): greedy selection over the pool's candidates, adopted when it
/// validates better than the best single model. The refit on all the data builds its equal-weight average here too.
/// </summary>
internal sealed class EnsemblePhase(SweepRun run)
{
    private readonly SweepSettings _settings = run.Settings;

    /// <summary>Selects an ensemble of the candidates and makes it the best model when it ranks before it.</summary>
    public void Select()
    {
        var selectionClock = Stopwatch.StartNew();
        var pool = run.Models.Candidates;
        var (counts, _) = EnsembleSelection.Select(_settings.Metric, pool.Select(p => p.Scores).ToList(),
            4 * _settings.EnsembleCandidates!.Value);
        var chosen = Enumerable.Range(0, pool.Count).Where(i => counts[i] > 0)
            .OrderByDescending(i => counts[i]).ThenBy(i => pool[i].Result.Id).ToList();
        if (chosen.Count < 2)
        {
            run.Log.Info("Ensemble selection kept a single model; the best trial stays the best model.");
            return;
        }
        var (result, model, members) = Build(chosen.Select(i => pool[i]).ToList(),
            chosen.Select(i => (double)counts[i]).ToList(), selectionClock.Elapsed);
        var previous = run.Models.Best!;
        if (_settings.Rank(result).CompareTo(_settings.Rank(previous)) >= 0)
        {
            // Not adopted: the stages stay candidates (released with them); the ensemble object holds nothing else.
            run.Log.Info(string.Create(CultureInfo.InvariantCulture, $"Ensemble of {members}: {_settings.Metric} "
                + $"{result.Metric:F4}, no better than {SweepRun.Describe(previous)}; the best model stays."));
            return;
        }
        Add(result, model);
        // The chosen stages now belong to the ensemble.
        run.Models.Withdraw(chosen);
        run.Log.Info(string.Create(CultureInfo.InvariantCulture, $"Ensemble {result.Id} of {members}: "
            + $"{_settings.Metric} {result.Metric:F4}, better than {SweepRun.Describe(previous)}; "
            + $"it is the best model."));
    }

    /// <summary>
    /// Records an ensemble as a leaderboard row, makes it the best model and reports it as a trial that started and
    /// ended.
    /// </summary>
    public void Add(TrialResult result, ITransformer model)
    {
        var previous = run.Models.Best;
        run.Trials.Add(result);
        run.Models.Adopt(result, model);
        run.Notify(SweepEventKind.TrialStarted, result.Id, result.Parameters, null, previous);
        run.Notify(SweepEventKind.TrialEnded, result.Id, result.Parameters, result, run.Models.Best);
    }

    /// <summary>
    /// The weighted average of the members' stages as a trial's model, its leaderboard row (next id, not yet added) and
    /// a description of the members. Its metric is that of exactly what the ensemble computes, or of
    /// <paramref name="outOfFold"/> when given.
    /// </summary>
    public (TrialResult Result, ITransformer Model, string Members) Build(IReadOnlyList<TrainedModel> members,
        IReadOnlyList<double> counts, TimeSpan duration, ValidationScores? outOfFold = null)
    {
        double total = counts.Sum();
        var weights = counts.Select(c => c / total).ToList();
        // Cross-validated members contribute their fold stages, each with its share of the member's weight. Counts,
        // not the weights: the ensemble normalises them to exactly counts / total, the weights reported here.
        var parts = members.SelectMany((m, i) => ModelPool.Stages(m.Model)
            .Select(p => (p.Stage, Weight: counts[i] * p.Weight))).ToList();
        var ensemble = new PeftEnsembleTransformer(run.Host, parts.Select(p => p.Stage).ToList(),
            parts.Select(p => p.Weight).ToList());
        // Combine works in place, so on copies of the scores.
        var combined = outOfFold?.Scores ?? PeftEnsembleTransformer.Combine(
            members.Select(m => m.Scores.Scores.Select(r => (float[])r.Clone()).ToArray()).ToList(), weights);
        var reference = outOfFold ?? members[0].Scores;
        var ensembleMembers = members.Select((m, i) => new EnsembleMember(m.Result.Id, weights[i])).ToList();
        var result = new TrialResult
        {
            Id = run.Trials.Count, Parameters = members[0].Result.Parameters, Status = TrialStatus.Succeeded,
            Metric = reference.Compute(_settings.Metric, combined), ValidationLoss = reference.TieBreakLoss(combined),
            TrainableParameters = ensemble.TrainableParameterCount, Duration = duration,
            PeakWorkingSetBytes = TrialRunner.PeakWorkingSet(), Ensemble = ensembleMembers,
        };
        // The trials' key mapping (fitted on the same training set in every trial) goes in front, as in a trial's
        // model.
        ITransformer model = members[0].Model is TransformerChain<ITransformer> chain
            ? new TransformerChain<ITransformer>([.. chain.Where(t => t is not PeftTextTransformer), ensemble])
            : ensemble;
        string description = string.Join(", ", ensembleMembers.Select(e => string.Create(CultureInfo.InvariantCulture,
            $"{(run.Trials[e.TrialId].Refit ? "refit" : "trial")} {e.TrialId} × {e.Weight:F2}")));
        return (result, model, description);
    }
}
