namespace Microsoft.ML.Peft.Sweep.Storage;

/// <summary>One row of <c>peft_trials</c> with its epoch losses.</summary>
internal sealed record StoredTrial
{
    public int Number { get; init; }
    public required TrialParameters Parameters { get; init; }
    public required string State { get; init; }
    public double Metric { get; init; } = double.NaN;
    public double ValidationLoss { get; init; } = double.NaN;
    public long TrainableParameters { get; init; }
    public double DurationSeconds { get; init; }
    public long PeakWorkingSet { get; init; }
    public string? Error { get; init; }
    public string? Worker { get; init; }
    public double? HeartbeatAt { get; init; }
    public int? RetryOf { get; init; }
    public int? RetriedBy { get; init; }
    public IReadOnlyList<double> EpochLosses { get; init; } = [];

    /// <summary>Ended: complete, failed or pruned.</summary>
    public bool Finished => State is StudySchema.Complete or StudySchema.Failed or StudySchema.Pruned;

    /// <summary>The leaderboard row of a finished trial.</summary>
    public TrialResult ToResult() => new()
    {
        Id = Number, Parameters = Parameters, Metric = Metric, ValidationLoss = ValidationLoss,
        TrainableParameters = TrainableParameters, Duration = TimeSpan.FromSeconds(DurationSeconds),
        PeakWorkingSetBytes = PeakWorkingSet, Error = Error, EpochLosses = EpochLosses,
        Status = State switch
        {
            StudySchema.Complete => TrialStatus.Succeeded,
            StudySchema.Pruned => TrialStatus.Pruned,
            StudySchema.Failed => TrialStatus.Failed,
            _ => TrialStatus.Cancelled,
        },
    };

    /// <summary>The state a trial's result is stored with (a cancelled trial waits to be run again).</summary>
    public static string StateOf(TrialStatus status) => status switch
    {
        TrialStatus.Succeeded => StudySchema.Complete,
        TrialStatus.Pruned => StudySchema.Pruned,
        TrialStatus.Failed => StudySchema.Failed,
        _ => StudySchema.Waiting,
    };
}
