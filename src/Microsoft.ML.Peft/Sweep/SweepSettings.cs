using Microsoft.ML.Peft.BaseModels;
using Microsoft.ML.Peft.MLNet;

namespace Microsoft.ML.Peft.Sweep;

/// <summary>
/// Everything <see cref="PeftSweep"/>'s fluent methods set, as one immutable value: each call returns a copy, so a run
/// works on a snapshot. The arguments of a single setting are checked by the setter that takes them (so that the
/// exception names its parameter); <see cref="Check"/> holds the checks between settings, which only a run can make.
/// </summary>
internal sealed record SweepSettings
{
    public IDataView? Train { get; init; }
    public IDataView? Validation { get; init; }
    public (int Folds, string? SamplingKeyColumn)? CrossValidation { get; init; }
    public string Label { get; init; } = "Label";
    public string Text { get; init; } = "Sentence1";
    public string? Text2 { get; init; }
    public PeftMetric Metric { get; init; } = PeftMetric.Accuracy;
    public PeftSearchSpace Space { get; init; } = PeftSearchSpace.CreateDefault();
    public PeftTuner Tuner { get; init; } = PeftTuner.CostFrugal(0);
    public double? Seconds { get; init; }
    public int? MaxTrials { get; init; }
    public string? CheckpointFolder { get; init; }
    public BaseModel? BaseModel { get; init; }
    public Action<PeftTextOptions>? Configure { get; init; }
    public Action<SweepEvent>? Monitor { get; init; }
    /// <summary>A custom trial (tests); null for the default, which trains a stage.</summary>
    public Func<TrialParameters, TrialReporter, CancellationToken, TrialOutcome>? Evaluate { get; init; }
    public (int ReductionFactor, int MinEpochs)? Halving { get; init; }
    /// <summary>The refit's share of the time budget; null without a refit.</summary>
    public double? RefitFraction { get; init; }
    public int RefitCount { get; init; } = 1;
    public bool RefitOnAllData { get; init; }
    public bool RefitKeepsDefault { get; init; } = true;
    /// <summary>How many models the ensemble selects from; null without an ensemble.</summary>
    public int? EnsembleCandidates { get; init; }
    /// <summary>The study database the workers share (<see cref="PeftSweep.SetStorage"/>); null for one process.
    /// </summary>
    public StudySettings? Storage { get; init; }

    /// <summary>The search's share of the time budget: all of it, less the refit's reserve.</summary>
    public double? SearchSeconds => Seconds is { } total && RefitFraction is { } share ? total * (1 - share) : Seconds;

    /// <summary>Throws <see cref="InvalidOperationException"/> for settings that cannot run together.</summary>
    public void Check()
    {
        if (Seconds is null && MaxTrials is null)
            throw new InvalidOperationException("Set a budget: SetTrainingTimeInSeconds and/or SetMaxTrials.");
        if (Evaluate is null && (Train is null || (Validation is null && CrossValidation is null)))
            throw new InvalidOperationException("Call SetDataset first.");
        Space.Validate();
        if (Storage is not null && (RefitFraction is not null || EnsembleCandidates is not null))
            throw new InvalidOperationException("SetStorage runs the search only: SetRefit and SetEnsemble work on "
                + "one process's models and are not supported with it. Remove them, or SetStorage.");
        if (RefitFraction is not null && Seconds is null)
            throw new InvalidOperationException("SetRefit needs a time budget: call SetTrainingTimeInSeconds.");
        if (RefitFraction is not null && Evaluate is not null)
            throw new InvalidOperationException("SetRefit needs the default trial evaluation (it retrains a stage); "
                + "remove SetTrialEvaluation or SetRefit.");
        if (EnsembleCandidates is not null && Evaluate is not null)
            throw new InvalidOperationException("SetEnsemble needs the default trial evaluation (it averages trained "
                + "stages); remove SetTrialEvaluation or SetEnsemble.");
        if (RefitOnAllData && RefitFraction is not null && EnsembleCandidates is not null)
            throw new InvalidOperationException("SetEnsemble chooses its weights on the validation rows, which "
                + "SetRefit(onAllData: true) trains on; use one of them (several refit configurations on all the data "
                + "are averaged with equal weights).");
        if (RefitFraction is not null && CrossValidation is not null)
            throw new InvalidOperationException("SetRefit needs a validation set, and cross-validation has none: each "
                + "trial's model already averages its fold models. Use SetDataset(train, validation) or remove "
                + "SetRefit.");
    }

    /// <summary>
    /// The default trial evaluation on these settings' splits; null with a custom one. Call after <see cref="Check"/>.
    /// </summary>
    public TrialEvaluator? CreateEvaluator(MLContext ml)
    {
        if (Evaluate is not null) return null;
        IReadOnlyList<(IDataView Train, IDataView Validation)> splits = CrossValidation is { } cv
            ? ml.Data.CrossValidationSplit(Train!, cv.Folds, cv.SamplingKeyColumn, seed: 0)
                .Select(s => (s.TrainSet, s.TestSet)).ToList()
            : [(Train!, Validation!)];
        return new TrialEvaluator(ml, splits, Train!, Label, Text, Text2, Metric, BaseModel, Configure,
            reportEpochs: Halving is not null);
    }

    /// <summary>
    /// Orders results best first: by the metric, then by the validation loss (see <see cref="PeftMetric"/>'s rank).
    /// </summary>
    public (double Metric, double Loss) Rank(TrialResult t) => Metric.Rank(t);

    /// <summary>Whether <paramref name="a"/> ranks before <paramref name="b"/>, the faster winning a tie.</summary>
    public bool IsBetter(TrialResult a, TrialResult b)
    {
        int order = Rank(a).CompareTo(Rank(b));
        return order < 0 || (order == 0 && a.Duration < b.Duration);
    }
}

/// <summary>What <see cref="PeftSweep.SetStorage"/> sets.</summary>
/// <param name="ConnectionString">The storage string; null for <c>study.db</c> in the checkpoint folder.</param>
/// <param name="Study">The study's name: the workers of one study give the same.</param>
/// <param name="HeartbeatTimeout">How long a running trial may go without a heartbeat before it is declared lost.
/// </param>
/// <param name="RetryLostTrials">Whether a lost trial is run again (by any worker).</param>
internal sealed record StudySettings(string? ConnectionString, string Study, TimeSpan HeartbeatTimeout,
    bool RetryLostTrials)
{
    /// <summary>How often a worker refreshes its trial's heartbeat: four beats per timeout, so that a late beat or
    /// two (a busy database, a paused process) does not look like a dead worker.</summary>
    public TimeSpan HeartbeatInterval => HeartbeatTimeout / 4;
}
