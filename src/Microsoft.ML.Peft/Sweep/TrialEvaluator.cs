using Microsoft.ML.Data;
using Microsoft.ML.Peft.BaseModels;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Peft.Training;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.Peft.Sweep;

/// <summary>
/// The default trial: builds the stage options from the point, fits on the training set and scores the validation set.
/// Classification: when the label column is not already a key, the pipeline is <c>MapValueToKey(label) → stage</c>,
/// so the best model takes raw labels; when it is a key, the stage alone. Regression: the stage alone on a float label.
/// With several splits (cross-validation) a trial trains one stage per fold, its metric is computed on the out-of-fold
/// scores of all rows, and its model is the equal-weight <see cref="PeftEnsembleTransformer"/> of the fold stages
/// (bagging).
/// </summary>
internal sealed class TrialEvaluator
{
    private readonly MLContext _ml;
    private readonly IReadOnlyList<(IDataView Train, IDataView Validation)> _splits;
    private readonly string _label, _text;
    private readonly string? _text2;
    private readonly PeftMetric _metric;
    private readonly BaseModel? _baseModel;
    private readonly Action<PeftTextOptions>? _configure;
    private readonly bool _reportEpochs;
    // One key mapping for every trial and fold (fitted on all rows),
    // so that all stages order the classes alike and can be averaged.
    private readonly ITransformer? _keys;

    public TrialEvaluator(MLContext ml, IReadOnlyList<(IDataView Train, IDataView Validation)> splits,
        IDataView keySource, string label, string text, string? text2, PeftMetric metric, BaseModel? baseModel,
        Action<PeftTextOptions>? configure, bool reportEpochs)
    {
        (_ml, _splits, _label, _text, _text2, _metric, _baseModel, _configure, _reportEpochs) =
            (ml, splits, label, text, text2, metric, baseModel, configure, reportEpochs);
        if (!metric.IsRegression() && keySource.Schema.GetColumnOrNull(label) is { } column
            && column.Type is not KeyDataViewType)
            _keys = ml.Transforms.Conversion.MapValueToKey(label).Fit(keySource);
    }

    public TrialOutcome Evaluate(TrialParameters parameters, TrialReporter reporter, CancellationToken cancel)
    {
        if (_splits.Count == 1)
            return Run(parameters, _splits[0].Train, _splits[0].Validation, reporter, cancel, refit: null);
        var folds = new List<TrialOutcome>();
        try
        {
            for (int f = 0; f < _splits.Count; f++)
            {
                cancel.ThrowIfCancellationRequested();
                // Successive halving judges a trial on its first fold's epochs; later folds restart the epoch count.
                folds.Add(Run(parameters, _splits[f].Train, _splits[f].Validation,
                    f == 0 ? reporter : new TrialReporter(-1, null), cancel, refit: null));
            }
        }
        catch
        {
            foreach (var fold in folds) (fold.Model as IDisposable)?.Dispose();
            throw;
        }
        var scores = ValidationScores.Concat(folds.Select(f => f.Validation!).ToList());
        var bag = new PeftEnsembleTransformer(_ml,
            folds.Select(f => f.Model).OfType<PeftTextTransformer>().ToList(), null);
        ITransformer model = _keys is null ? bag : new TransformerChain<ITransformer>(_keys, bag);
        return new TrialOutcome(scores.Compute(_metric), model, bag.TrainableParameterCount) { Validation = scores };
    }

    /// <summary>
    /// Trains <paramref name="parameters"/> again for <paramref name="time"/>: epochs unbounded, the schedule decaying
    /// by the clock, each epoch scored on the validation set and the best epoch kept. Needs a single train/validation
    /// split. With <paramref name="onAllData"/> it trains on the training and validation rows together and keeps the
    /// last epoch (no epoch can be chosen on rows the model trained on); the returned metric is then in-sample. With
    /// <paramref name="heldOut"/> as well (a mask over the validation rows) it trains on the training rows and the
    /// unmasked validation rows, and scores, and chooses the epoch on, the masked ones: a metric on rows it did not
    /// train on.
    /// </summary>
    public TrialOutcome Refit(TrialParameters parameters, TimeSpan time, bool onAllData, bool[]? heldOut,
        CancellationToken cancel) =>
        _splits.Count == 1
            ? Run(parameters, _splits[0].Train, _splits[0].Validation, new TrialReporter(-1, null), cancel,
                (time, onAllData, heldOut))
            : throw new InvalidOperationException(
                "A refit needs a validation set; " +
                "with cross-validation each trial's model already averages its fold models.");

    /// <summary>
    /// Trains a stage on <paramref name="train"/> and scores <paramref name="validation"/>. With several folds the
    /// model is the bare stage.
    /// </summary>
    private TrialOutcome Run(TrialParameters parameters, IDataView train, IDataView validation, TrialReporter reporter,
        CancellationToken cancel, (TimeSpan Time, bool OnAllData, bool[]? HeldOut)? refit)
    {
        bool regression = _metric.IsRegression();
        PeftTextOptions options = regression ? new PeftTextRegressionOptions() : new PeftTextClassificationOptions();
        options.LabelColumnName = _label;
        options.Sentence1ColumnName = _text;
        options.Sentence2ColumnName = _text2;
        options.BaseModel = _baseModel;
        _configure?.Invoke(options);
        parameters.ApplyTo(options);
        // Trials are short probes that the tuner compares by their cost: a space without epochs or batch size keeps the
        // fixed 3 epochs of 32 rather than the stage's data-size plan (which could run 40 epochs of a small set). With
        // Epochs set, the stage holds no rows out either: the sweep validates on its own rows.
        options.Epochs ??= TrainingPlanner.DefaultEpochs;
        options.BatchSize ??= TrainingPlanner.LargeBatchSize;
        options.CancellationToken = cancel;
        if (_keys is not null)
        {
            // The stage trains and validates on keys; the validation set gets them too, for per-epoch scoring.
            train = _keys.Transform(train);
            validation = _keys.Transform(validation);
        }
        if (refit is { } again)
        {
            options.Epochs = 100_000;
            options.MaxTrainingTime = again.Time;
            if (again.OnAllData && again.HeldOut is { } mask)
            {
                train = Append(train, new RowMaskDataView(validation, mask, keep: false), options);
                validation = options.ValidationSet = new RowMaskDataView(validation, mask, keep: true);
            }
            else if (again.OnAllData) train = Append(train, validation, options);
            else options.ValidationSet = validation;
        }
        else if (_reportEpochs)
        {
            // Per-epoch validation scores feed successive halving:
            // accuracy (higher is better) or RMSE (lower is better).
            options.ValidationSet = validation;
            var user = options.Progress;
            options.Progress = p =>
            {
                user?.Invoke(p);
                if (p.ValidationMetric is { } m)
                    reporter.ReportEpoch(p.Epoch, regression ? m : -m, isLastEpoch: p.Epoch >= p.Epochs);
            };
        }
        options.Validate();

        PeftTextTransformer stage = regression
            ? _ml.Peft().TextRegression((PeftTextRegressionOptions)options).Fit(train)
            : _ml.Peft().TextClassification((PeftTextClassificationOptions)options).Fit(train);
        try
        {
            cancel.ThrowIfCancellationRequested();
            var scored = stage.Transform(new CancellableDataView(validation, cancel));
            string score = options.OutputColumnPrefix + (options is PeftTextRegressionOptions r
                ? r.ScoreColumnName
                : ((PeftTextClassificationOptions)options).ScoreColumnName);
            var scores = ValidationScores.Read(scored, _label, score, regression);
            ITransformer model = _keys is null || _splits.Count > 1
                ? stage
                : new TransformerChain<ITransformer>(_keys, stage);
            return new TrialOutcome(scores.Compute(_metric), model, stage.TrainableParameterCount)
            {
                Validation = scores,
            };
        }
        catch
        {
            stage.Dispose();
            throw;
        }
    }
    // The training rows followed by the validation rows, both cut to the columns the stage reads (so that other columns
    // may differ); the columns it reads must have the same types in both.
    private IDataView Append(IDataView train, IDataView validation, PeftTextOptions options)
    {
        string[] columns =
        [
            .. new[] { options.LabelColumnName, options.Sentence1ColumnName, options.Sentence2ColumnName }
                .OfType<string>(),
        ];
        foreach (var name in columns)
        {
            var a = train.Schema.GetColumnOrNull(name)?.Type;
            var b = validation.Schema.GetColumnOrNull(name)?.Type;
            if (a is null || b is null || !a.Equals(b))
                throw new InvalidOperationException(
                    "Refitting on the training and validation rows together " +
                    $"needs column '{name}' with one type in both; " +
                    $"training has {a?.ToString() ?? "no such column"}, " +
                    $"validation {b?.ToString() ?? "no such column"}.");
        }
        var select = _ml.Transforms.SelectColumns(columns).Fit(train);
        return AppendRowsDataView.Create((IHostEnvironment)_ml, null, select.Transform(train),
            select.Transform(validation));
    }
}
