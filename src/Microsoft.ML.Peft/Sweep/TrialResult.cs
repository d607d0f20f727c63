namespace Microsoft.ML.Peft.Sweep;

/// <summary>How a trial ended.</summary>
public enum TrialStatus
{
    /// <summary>Trained and evaluated; the metric is finite.</summary>
    Succeeded,
    /// <summary>Threw, or produced a non-finite metric; see <see cref="TrialResult.Error"/>.</summary>
    Failed,
    /// <summary>
    /// Stopped early by successive halving (<see cref="PeftSweep.SetEarlyStopping"/>); see
    /// <see cref="TrialResult.Error"/>.
    /// </summary>
    Pruned,
    /// <summary>
    /// Stopped by the time budget or the caller's cancellation token; not checkpointed, rerun on resume.
    /// </summary>
    Cancelled,
}

/// <summary>One row of the leaderboard.</summary>
public sealed record TrialResult
{
    /// <summary>0-based trial number in proposal order.</summary>
    public int Id { get; init; }

    /// <summary>The point that was tried.</summary>
    public required TrialParameters Parameters { get; init; }

    /// <summary>How it ended.</summary>
    public TrialStatus Status { get; init; }

    /// <summary>
    /// The validation metric (NaN unless <see cref="Status"/> is <see cref="TrialStatus.Succeeded"/>).
    /// </summary>
    public double Metric { get; init; } = double.NaN;

    /// <summary>
    /// Log-loss (classification) or mean squared error (regression) on the validation set; NaN when unknown (custom
    /// evaluations, failed trials). It breaks ties of <see cref="Metric"/>: accuracy on an imbalanced or hard task
    /// often ties at the majority class, and log-loss still tells which trial learned more.
    /// </summary>
    public double ValidationLoss { get; init; } = double.NaN;

    /// <summary>Trainable parameters of the stage (0 when unknown).</summary>
    public long TrainableParameters { get; init; }

    /// <summary>Wall-clock time of training and evaluation.</summary>
    public TimeSpan Duration { get; init; }

    /// <summary>
    /// The process's peak working set (bytes) when the trial ended (a high-water mark of the whole process so far).
    /// </summary>
    public long PeakWorkingSetBytes { get; init; }

    /// <summary>The exception message of a failed or cancelled trial; null otherwise.</summary>
    public string? Error { get; init; }

    /// <summary>
    /// Validation losses the trial reported after each epoch (index 0 is epoch 1; lower is better), as successive
    /// halving saw them; empty when the trial reported none. Kept in the checkpoint so a resumed sweep halves against
    /// the same history.
    /// </summary>
    public IReadOnlyList<double> EpochLosses { get; init; } = [];

    /// <summary>
    /// True for a final retraining of one of the best configurations (<see cref="PeftSweep.SetRefit"/>).
    /// </summary>
    public bool Refit { get; init; }

    /// <summary>
    /// True when the validation rows its <see cref="Metric"/> is computed on were part of this model's training data (a
    /// single <see cref="PeftSweep.SetRefit"/> with <c>onAllData</c>): the metric is in-sample, not comparable with the
    /// other rows'. Cross-fitted refits (several with <c>onAllData</c>) train on validation rows too, but are scored on
    /// the fold they held out, as their ensemble is on the out-of-fold scores: false for them.
    /// </summary>
    public bool TrainedOnValidation { get; init; }

    /// <summary>
    /// For the ensemble row (<see cref="PeftSweep.SetEnsemble"/>): the trials it averages and their weights, heaviest
    /// first (<see cref="Parameters"/> are then the heaviest member's); empty for every other row.
    /// </summary>
    public IReadOnlyList<EnsembleMember> Ensemble { get; init; } = [];

    /// <summary>True when this result was read from the checkpoint folder rather than run again.</summary>
    public bool FromCheckpoint { get; init; }
}

/// <summary>A member of a sweep's ensemble.</summary>
/// <param name="TrialId">The trial (or refit) whose model is averaged.</param>
/// <param name="Weight">Its weight in the average (the weights sum to 1).</param>
public sealed record EnsembleMember(int TrialId, double Weight);

/// <summary>What a trial evaluation returns to the sweep.</summary>
/// <param name="Metric">The validation metric.</param>
/// <param name="Model">The trained model (null for synthetic evaluations).</param>
/// <param name="TrainableParameters">Trainable parameters of the stage (0 when unknown).</param>
public sealed record TrialOutcome(double Metric, ITransformer? Model = null, long TrainableParameters = 0)
{
    /// <summary>
    /// The model's validation scores, which ensemble selection averages (null for custom evaluations).
    /// </summary>
    internal ValidationScores? Validation { get; init; }
}

/// <summary>What a sweep reports to its monitor.</summary>
public enum SweepEventKind
{
    /// <summary>A trial is about to run.</summary>
    TrialStarted,
    /// <summary>A trial ended (any status), or was replayed from the checkpoint.</summary>
    TrialEnded,
}

/// <summary>A progress report of a sweep.</summary>
/// <param name="Kind">Start or end of a trial.</param>
/// <param name="TrialId">The trial number.</param>
/// <param name="Parameters">The trial's point.</param>
/// <param name="Result">The result (only for <see cref="SweepEventKind.TrialEnded"/>).</param>
/// <param name="BestSoFar">The best succeeded trial so far, if any.</param>
public sealed record SweepEvent(SweepEventKind Kind, int TrialId, TrialParameters Parameters, TrialResult? Result,
    TrialResult? BestSoFar);
