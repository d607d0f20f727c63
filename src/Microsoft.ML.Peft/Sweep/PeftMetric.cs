namespace Microsoft.ML.Peft.Sweep;

/// <summary>The validation metric a sweep optimises; it also decides the task (classification or regression).</summary>
public enum PeftMetric
{
    /// <summary>Micro accuracy (classification; maximised).</summary>
    Accuracy,
    /// <summary>Macro accuracy: mean per-class accuracy (classification; maximised).</summary>
    MacroAccuracy,
    /// <summary>Log-loss (classification; minimised).</summary>
    LogLoss,
    /// <summary>
    /// F1 of class key 2 (the second label value) against the first (binary classification; maximised).
    /// </summary>
    F1,
    /// <summary>Area under the ROC curve of class key 2's probability (binary classification; maximised).</summary>
    Auc,
    /// <summary>Root mean squared error (regression; minimised).</summary>
    Rmse,
    /// <summary>Mean absolute error (regression; minimised).</summary>
    Mae,
    /// <summary>Coefficient of determination (regression; maximised).</summary>
    RSquared,
    /// <summary>Pearson correlation of score and label (regression; maximised).</summary>
    Pearson,
}

/// <summary>Direction and task of each <see cref="PeftMetric"/>.</summary>
public static class PeftMetricExtensions
{
    /// <summary>True when larger is better.</summary>
    public static bool IsMaximized(this PeftMetric metric) =>
        metric is not (PeftMetric.LogLoss or PeftMetric.Rmse or PeftMetric.Mae);

    /// <summary>True for regression metrics.</summary>
    public static bool IsRegression(this PeftMetric metric) =>
        metric is PeftMetric.Rmse or PeftMetric.Mae or PeftMetric.RSquared or PeftMetric.Pearson;

    /// <summary>The value tuners minimise: the metric, negated when larger is better.</summary>
    internal static double ToLoss(this PeftMetric metric, double value) => metric.IsMaximized() ? -value : value;

    /// <summary>
    /// How a succeeded result ranks (smaller is better): the metric as a loss, then its validation loss where metrics
    /// tie (unknown counts as worst). The sweep and the leaderboard both order by it.
    /// </summary>
    internal static (double Metric, double Loss) Rank(this PeftMetric metric, TrialResult t) =>
        (metric.ToLoss(t.Metric), double.IsNaN(t.ValidationLoss) ? double.PositiveInfinity : t.ValidationLoss);
}
