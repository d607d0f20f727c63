namespace Microsoft.ML.Peft.Training;

/// <summary>What the head predicts.</summary>
public enum PeftTask
{
    /// <summary>Single-label classification over key values; softmax + cross-entropy.</summary>
    Classification,
    /// <summary>One float per row; mean squared error.</summary>
    Regression,
}

/// <summary>Resolved training hyper-parameters handed to <see cref="PeftTrainer"/> (already validated).</summary>
internal sealed record TrainingSettings
{
    public int BatchSize { get; init; } = 32;
    public int TokenBudget { get; init; }
    public int Epochs { get; init; } = 3;
    public double LearningRate { get; init; } = 5e-4;
    /// <summary>Peak learning rate of the head (<c>classifier.*</c>); null: <see cref="LearningRate"/>.</summary>
    public double? HeadLearningRate { get; init; }
    public double WeightDecay { get; init; } = 0.01;
    public double WarmupRatio { get; init; } = 0.06;
    public double MaxGradNorm { get; init; } = 1.0;
    public int EarlyStoppingPatience { get; init; }
    /// <summary>
    /// Training stops once this much time has passed; the schedule then follows time as well as steps.
    /// </summary>
    public TimeSpan? TimeLimit { get; init; }
    public int Seed { get; init; }
    public int LogEverySteps { get; init; } = 20;
    public PeftTask Task { get; init; }
    /// <summary>How regression targets were standardised: RMSE is reported in label units through it.</summary>
    internal Inference.LabelScaler Labels { get; init; } = Inference.LabelScaler.Identity;
    /// <summary>Forward/backward tensor type; BFloat16 trains with float32 master weights.</summary>
    public TorchSharp.torch.ScalarType ComputeType { get; init; } = TorchSharp.torch.ScalarType.Float32;
    /// <summary>
    /// Memory training may add to the process above <see cref="StartResidentBytes"/>; null: no budget (no
    /// measurement, every batch in one pass).
    /// </summary>
    public long? MemoryBudget { get; init; }
    /// <summary>Resident memory when the fit began, which the budget counts from.</summary>
    public long StartResidentBytes { get; init; }
    /// <summary>True when the options left attention dropout to the base model, so the memory budget may turn it off
    /// for the fused attention kernel.</summary>
    public bool AttentionDropoutAdjustable { get; init; }
}

/// <summary>A progress report from the training loop.</summary>
public sealed record TrainingProgress(
    int Epoch, int Epochs, int Step, int TotalSteps, double Loss, double LearningRate,
    double TokensPerSecond, TimeSpan Elapsed, TimeSpan Remaining, double? ValidationMetric, string? MetricName)
{
    /// <summary>One log line.</summary>
    public override string ToString() =>
        $"epoch {Epoch}/{Epochs} step {Step}/{TotalSteps} loss {Loss:F4} lr {LearningRate:E2} "
        + $"{TokensPerSecond:F0} tokens/s ETA {Remaining:hh\\:mm\\:ss}"
        + (ValidationMetric is { } m ? $" validation {MetricName} {m:F4}" : "");
}

/// <summary>What training did.</summary>
public sealed record TrainingReport(
    int EpochsRun, int BestEpoch, double? BestValidationMetric, string MetricName, double FinalTrainLoss,
    double TokensPerSecond, TimeSpan Duration, int SkippedRows, bool StoppedAtTimeLimit = false)
{
    /// <summary>
    /// What the stage decided before training: batch size, epochs, steps and held-out rows (null when the trainer ran
    /// outside a stage).
    /// </summary>
    public TrainingPlan? Plan { get; init; }

    /// <summary>What the memory budget decided (null when the trainer ran without one).</summary>
    public TrainingMemoryPlan? Memory { get; init; }
}
