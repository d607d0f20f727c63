using System.Globalization;
using System.Text;

namespace Microsoft.ML.Peft.Sweep;

/// <summary>The outcome of <see cref="PeftSweep.RunAsync"/>: the best trial and model, and the leaderboard.</summary>
public sealed class PeftSweepResult
{
    internal PeftSweepResult(PeftMetric metric, TrialResult best, ITransformer? bestModel,
        IReadOnlyList<TrialResult> trials)
    {
        Metric = metric;
        BestTrial = best;
        BestModel = bestModel;
        Trials = trials;
    }

    /// <summary>The metric the sweep optimised.</summary>
    public PeftMetric Metric { get; }

    /// <summary>
    /// The succeeded trial with the best metric (on ties, the lower <see cref="TrialResult.ValidationLoss"/>, then the
    /// cheaper); with <see cref="PeftSweep.SetEnsemble"/>, the ensemble row when the ensemble validated better than
    /// every single model.
    /// </summary>
    public TrialResult BestTrial { get; }

    /// <summary>
    /// The best trial's model, trained on the training set; for a best trial replayed from a checkpoint it is loaded
    /// from the folder's <c>best-model.zip</c>. With <see cref="PeftSweep.SetEnsemble"/>, the ensemble when it
    /// validated better (its stage is then a <see cref="MLNet.PeftEnsembleTransformer"/>). Null when a custom trial
    /// evaluation returned no model.
    /// </summary>
    public ITransformer? BestModel { get; }

    /// <summary>Every trial, in order (including failed and cancelled ones).</summary>
    public IReadOnlyList<TrialResult> Trials { get; }

    /// <summary>
    /// The leaderboard as an <see cref="IDataView"/> with the columns of <see cref="PeftTrialRow"/>, best first.
    /// </summary>
    public IDataView ToDataView(MLContext mlContext)
    {
        ArgumentNullException.ThrowIfNull(mlContext);
        return mlContext.Data.LoadFromEnumerable(Leaderboard().Select(ToRow).ToList());
    }

    /// <summary>Writes the leaderboard (best first) as CSV with a header row.</summary>
    public void WriteCsv(string path)
    {
        var sb = new StringBuilder(
            "Id,Method,Parameters,Metric,TrainableParameters,DurationSeconds,PeakWorkingSetBytes," +
            "Status,Error,Refit,Ensemble,ValidationLoss,TrainedOnValidation\n");
        foreach (var r in Leaderboard().Select(ToRow))
            sb.Append(string.Join(',',
                r.Id.ToString(CultureInfo.InvariantCulture), Quote(r.Method), Quote(r.Parameters),
                r.Metric.ToString("R", CultureInfo.InvariantCulture),
                r.TrainableParameters.ToString(CultureInfo.InvariantCulture),
                r.DurationSeconds.ToString("R", CultureInfo.InvariantCulture),
                r.PeakWorkingSetBytes.ToString(CultureInfo.InvariantCulture),
                r.Status, Quote(r.Error), r.Refit ? "true" : "false", Quote(r.Ensemble),
                r.ValidationLoss.ToString("R", CultureInfo.InvariantCulture),
                r.TrainedOnValidation ? "true" : "false")).Append('\n');
        File.WriteAllText(path, sb.ToString());
    }

    /// <summary>Trials ordered best first: succeeded by metric, then failed, then cancelled.</summary>
    public IEnumerable<TrialResult> Leaderboard() => Trials
        .OrderBy(t => t.Status)
        .ThenBy(t => t.Status == TrialStatus.Succeeded ? Metric.Rank(t) : default)
        .ThenBy(t => t.Duration)
        .ThenBy(t => t.Id);

    private static PeftTrialRow ToRow(TrialResult t) => new()
    {
        Id = t.Id, Method = t.Ensemble.Count > 0 ? "ensemble" : t.Parameters.Method, Parameters = t.Parameters.ToJson(),
        Metric = t.Metric, TrainableParameters = t.TrainableParameters, DurationSeconds = t.Duration.TotalSeconds,
        PeakWorkingSetBytes = t.PeakWorkingSetBytes, Status = t.Status.ToString(), Error = t.Error ?? "",
        Refit = t.Refit, ValidationLoss = t.ValidationLoss, TrainedOnValidation = t.TrainedOnValidation,
        Ensemble = string.Join(';',
            t.Ensemble.Select(e => string.Create(CultureInfo.InvariantCulture, $"{e.TrialId}:{e.Weight:R}"))),
    };

    private static string Quote(string? s) => "\"" + (s ?? "").Replace("\"", "\"\"") + "\"";
}

/// <summary>One leaderboard row as <see cref="PeftSweepResult.ToDataView"/> exposes it.</summary>
public sealed class PeftTrialRow
{
    /// <summary>Trial number.</summary>
    public int Id { get; set; }
    /// <summary>PEFT method name.</summary>
    public string Method { get; set; } = "";
    /// <summary>The trial's parameters as JSON.</summary>
    public string Parameters { get; set; } = "";
    /// <summary>Validation metric (NaN unless succeeded).</summary>
    public double Metric { get; set; }
    /// <summary>Trainable parameters.</summary>
    public long TrainableParameters { get; set; }
    /// <summary>Duration in seconds.</summary>
    public double DurationSeconds { get; set; }
    /// <summary>Process peak working set in bytes at the end of the trial.</summary>
    public long PeakWorkingSetBytes { get; set; }
    /// <summary>Succeeded, Failed or Cancelled.</summary>
    public string Status { get; set; } = "";
    /// <summary>Error message; empty when none.</summary>
    public string Error { get; set; } = "";
    /// <summary>True for a final retraining of one of the best configurations.</summary>
    public bool Refit { get; set; }
    /// <summary>For the ensemble row: its members as <c>trialId:weight</c> separated by ';'; empty otherwise.</summary>
    public string Ensemble { get; set; } = "";
    /// <summary>
    /// Validation log-loss (classification) or mean squared error (regression), the tie-break of the metric; NaN when
    /// unknown.
    /// </summary>
    public double ValidationLoss { get; set; }
    /// <summary>
    /// True when this model trained on the validation rows its metric is computed on: the metric is in-sample.
    /// </summary>
    public bool TrainedOnValidation { get; set; }
}
