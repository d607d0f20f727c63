using Microsoft.ML.Data;
using Microsoft.ML.Peft.BaseModels;
using Microsoft.ML.Peft.MLNet;

namespace Microsoft.ML.Peft.Sweep;

/// <summary>
/// The default trial: builds the stage options from the point, fits on the training set and scores the validation set.
/// Classification: when the label column is not already a key, the pipeline is <c>MapValueToKey(label) → stage</c>, so the
/// best model takes raw labels; when it is a key, the stage alone. Regression: the stage alone on a float label.
/// </summary>
internal sealed class TrialEvaluator(
    MLContext ml, IDataView train, IDataView validation, string label, string text, string? text2, PeftMetric metric,
    BaseModel? baseModel, Action<PeftTextOptions>? configure, bool reportEpochs)
{
    public TrialOutcome Evaluate(TrialParameters parameters, TrialReporter reporter, CancellationToken cancel) =>
        Run(parameters, reporter, cancel, refitTime: null);

    /// <summary>
    /// Trains <paramref name="parameters"/> again for <paramref name="time"/>: epochs unbounded, the schedule decaying by the
    /// clock, each epoch scored on the validation set and the best epoch kept.
    /// </summary>
    public TrialOutcome Refit(TrialParameters parameters, TimeSpan time, CancellationToken cancel) =>
        Run(parameters, new TrialReporter(-1, null), cancel, time);

    private TrialOutcome Run(TrialParameters parameters, TrialReporter reporter, CancellationToken cancel, TimeSpan? refitTime)
    {
        bool regression = metric.IsRegression();
        PeftTextOptions options = regression ? new PeftTextRegressionOptions() : new PeftTextClassificationOptions();
        options.LabelColumnName = label;
        options.Sentence1ColumnName = text;
        options.Sentence2ColumnName = text2;
        options.BaseModel = baseModel;
        configure?.Invoke(options);
        parameters.ApplyTo(options);
        options.CancellationToken = cancel;
        if (refitTime is { } time)
        {
            options.Epochs = 100_000;
            options.MaxTrainingTime = time;
            options.ValidationSet = validation;
        }
        else if (reportEpochs)
        {
            // Per-epoch validation scores feed successive halving: accuracy (higher is better) or RMSE (lower is better).
            options.ValidationSet = validation;
            var user = options.Progress;
            options.Progress = p =>
            {
                user?.Invoke(p);
                if (p.ValidationMetric is { } m) reporter.ReportEpoch(p.Epoch, regression ? m : -m, isLastEpoch: p.Epoch >= p.Epochs);
            };
        }
        options.Validate();

        ITransformer model;
        if (regression) model = ml.Peft().TextRegression((PeftTextRegressionOptions)options).Fit(train);
        else
        {
            var classification = (PeftTextClassificationOptions)options;
            if (train.Schema[label].Type is KeyDataViewType) model = ml.Peft().TextClassification(classification).Fit(train);
            else
            {
                // The key mapping is fitted first so that the stage's per-epoch validation set gets keys too.
                var keys = ml.Transforms.Conversion.MapValueToKey(label).Fit(train);
                if (classification.ValidationSet is not null) classification.ValidationSet = keys.Transform(validation);
                model = new TransformerChain<ITransformer>(keys, ml.Peft().TextClassification(classification).Fit(keys.Transform(train)));
            }
        }
        cancel.ThrowIfCancellationRequested();
        var scored = model.Transform(new CancellableDataView(validation, cancel));
        string score = options.OutputColumnPrefix + (options is PeftTextRegressionOptions r ? r.ScoreColumnName : ((PeftTextClassificationOptions)options).ScoreColumnName);
        var scores = ValidationScores.Read(scored, label, score, regression);
        long trainable = (model is IEnumerable<ITransformer> chain ? chain : [model]).OfType<PeftTextTransformer>().Sum(t => t.TrainableParameterCount);
        return new TrialOutcome(scores.Compute(metric), model, trainable) { Validation = scores };
    }
}
