using TorchSharp;
using System.Globalization;
using Microsoft.ML.Data;
using Microsoft.ML.Peft.BaseModels;
using Microsoft.ML.Peft.Modeling;
using Microsoft.ML.Peft.Training;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.Peft.MLNet;

/// <summary>
/// Fine-tunes a pretrained encoder with a PEFT method on text columns and returns a <see cref="PeftTextTransformer"/>.
/// One estimator serves every method and both tasks; the method decides what trains.
/// </summary>
public sealed class PeftTextEstimator : IEstimator<PeftTextTransformer>
{
    private readonly IHost _host;
    private readonly PeftTextOptions _options;
    private readonly PeftTask _task;

    internal PeftTextEstimator(IHostEnvironment env, PeftTextOptions options, PeftTask task)
    {
        _host = env.Register(nameof(PeftTextEstimator));
        options.Validate();
        _options = options.CloneOptions();
        _task = task;
    }

    private string ScoreColumn => _options.OutputColumnPrefix + (_options is PeftTextClassificationOptions c ? c.ScoreColumnName : ((PeftTextRegressionOptions)_options).ScoreColumnName);
    private string PredictedLabelColumn => _options.OutputColumnPrefix + ((PeftTextClassificationOptions)_options).PredictedLabelColumnName;

    /// <inheritdoc/>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema)
    {
        void RequireText(string name, string option)
        {
            if (!inputSchema.TryFindColumn(name, out var col))
                throw new ArgumentOutOfRangeException(option, $"Text column '{name}' (option '{option}') was not found in the input.");
            if (col.Kind != SchemaShape.Column.VectorKind.Scalar || col.ItemType is not TextDataViewType)
                throw new ArgumentOutOfRangeException(option, $"Column '{name}' (option '{option}') must be Text (string), but is {col.ItemType}.");
        }
        RequireText(_options.Sentence1ColumnName, nameof(PeftTextOptions.Sentence1ColumnName));
        if (_options.Sentence2ColumnName is { } s2) RequireText(s2, nameof(PeftTextOptions.Sentence2ColumnName));
        var columns = inputSchema.ToDictionary(c => c.Name);
        if (!inputSchema.TryFindColumn(_options.LabelColumnName, out var label))
            throw new ArgumentOutOfRangeException(nameof(PeftTextOptions.LabelColumnName), $"Label column '{_options.LabelColumnName}' was not found in the input.");
        if (_task == PeftTask.Regression)
        {
            columns[ScoreColumn] = new SchemaShape.Column(ScoreColumn, SchemaShape.Column.VectorKind.Scalar, NumberDataViewType.Single, false);
            return new SchemaShape(columns.Values);
        }
        if (!label.IsKey)
            throw new ArgumentOutOfRangeException(nameof(PeftTextOptions.LabelColumnName),
                $"Label column '{label.Name}' must be a key type for classification, but is {label.ItemType}. Add mlContext.Transforms.Conversion.MapValueToKey(\"{label.Name}\") before this stage.");
        var keyValues = label.Annotations.Where(a => a.Name == AnnotationUtils.Kinds.KeyValues).ToArray();
        columns[ScoreColumn] = new SchemaShape.Column(ScoreColumn, SchemaShape.Column.VectorKind.Vector, NumberDataViewType.Single, false,
            new SchemaShape(keyValues.Select(k => new SchemaShape.Column(AnnotationUtils.Kinds.SlotNames, SchemaShape.Column.VectorKind.Vector, TextDataViewType.Instance, false))));
        columns[PredictedLabelColumn] = new SchemaShape.Column(PredictedLabelColumn, SchemaShape.Column.VectorKind.Scalar, NumberDataViewType.UInt32, true, new SchemaShape(keyValues));
        return new SchemaShape(columns.Values);
    }

    /// <inheritdoc/>
    public PeftTextTransformer Fit(IDataView input)
    {
        using var ch = _host.Start("Training");
        Runtime.TorchRuntime.EnsureLoaded();
        var o = _options;
        var schema = input.Schema;
        SchemaChecks.Text(schema, o.Sentence1ColumnName, nameof(PeftTextOptions.Sentence1ColumnName));
        if (o.Sentence2ColumnName is not null) SchemaChecks.Text(schema, o.Sentence2ColumnName, nameof(PeftTextOptions.Sentence2ColumnName));
        var labelColumn = SchemaChecks.Label(schema, o.LabelColumnName, _task);
        KeyValueList? labels = _task == PeftTask.Classification ? KeyValueList.FromKeyColumn(labelColumn) : null;
        int numOutputs = labels?.Count ?? 1;

        var data = TrainingData.Read(input, o.LabelColumnName, o.Sentence1ColumnName, o.Sentence2ColumnName, _task, _host.CheckAlive);
        if (data.SkippedMissingLabel > 0)
            ch.Warning($"Skipped {data.SkippedMissingLabel} training row(s) with a missing label in column '{o.LabelColumnName}'.");
        if (data.Count == 0)
            throw new InvalidOperationException($"The training data has no rows with a label in column '{o.LabelColumnName}'.");
        if (_task == PeftTask.Classification && data.Labels.Distinct().Count() < 2)
            throw new InvalidOperationException($"The training data has only one class in label column '{o.LabelColumnName}' " +
                $"('{labels!.Values[(int)data.Labels[0]]}'); a classifier needs at least two.");

        TrainingData? valid = null;
        if (o.ValidationSet is not null)
        {
            SchemaChecks.Text(o.ValidationSet.Schema, o.Sentence1ColumnName, nameof(PeftTextOptions.ValidationSet));
            SchemaChecks.Label(o.ValidationSet.Schema, o.LabelColumnName, _task);
            valid = TrainingData.Read(o.ValidationSet, o.LabelColumnName, o.Sentence1ColumnName, o.Sentence2ColumnName, _task, _host.CheckAlive);
        }

        // Regression trains on standardised targets: with few trainable weights, Adam's bounded steps would otherwise
        // spend most of the budget moving the head's bias to the label mean.
        double shift = 0, scale = 1;
        if (_task == PeftTask.Regression)
        {
            shift = data.Labels.Average();
            double sd = Math.Sqrt(data.Labels.Sum(y => (y - shift) * (y - shift)) / data.Count);
            scale = sd > 1e-12 ? sd : 1;
            Standardise(data.Labels, shift, scale);
            if (valid is not null) Standardise(valid.Labels, shift, scale);
        }

        var baseModel = o.BaseModel ?? BaseModel.Default;
        var tokenizer = baseModel.CreateTokenizer();
        int maxLength = Math.Min(o.MaxSequenceLength, baseModel.Config.MaxSequenceLength);
        var train = Training.Encoding.EncodeAll(tokenizer, data.First, data.Second, data.Labels, maxLength);
        var validation = valid is null ? null : Training.Encoding.EncodeAll(tokenizer, valid.First, valid.Second, valid.Labels, maxLength);

        var method = o.Method!;
        var device = PeftDevice.Resolve(_host, ch);
        // Method weights (e.g. LoRA's A) and the head are drawn from libtorch's global generator: seed it from the
        // MLContext first, so a given seed always gives the same model.
        int seed = _host.Rand.Next();
        torch.manual_seed(seed);
        var encoder = baseModel.CreateEncoder(withPooler: o.Pooling == Pooling.Pooler || (o.Pooling == Pooling.Auto && baseModel.HasPooler));
        if (o.AttentionDropout is { } attentionDropout)
            foreach (var attention in encoder.modules().OfType<BertSelfAttention>()) attention.AttentionDropout = attentionDropout;
        var model = PeftModel.Create(encoder, method, numOutputs, o.Pooling, o.HeadDropout);
        bool handedOver = false;
        try
        {
            model.to(device);
            var computeType = PrecisionPolicy.Resolve(o.Precision, device);
            ch.Info($"Precision: {(computeType == TorchSharp.torch.ScalarType.BFloat16 ? "bfloat16 (float32 master weights, loss and softmax)" : "float32")} (requested {o.Precision}).");
            var (trainable, total) = model.CountParameters();
            ch.Info(string.Format(CultureInfo.InvariantCulture, "trainable params: {0:N0} || all params: {1:N0} || trainable%: {2:F4}", trainable, total, 100.0 * trainable / total));
            ch.Info($"Fine-tuning {baseModel.Name} with {method.MethodName} on {train.Length} rows ({data.Count} read), {numOutputs} output(s), max length {maxLength}.");

            var settings = new TrainingSettings
            {
                BatchSize = o.BatchSize, TokenBudget = o.TokenBudget, Epochs = o.Epochs, LearningRate = o.LearningRate ?? method.DefaultLearningRate,
                WeightDecay = o.WeightDecay, WarmupRatio = o.WarmupRatio, MaxGradNorm = o.MaxGradNorm,
                EarlyStoppingPatience = o.EarlyStoppingPatience, TimeLimit = o.MaxTrainingTime, Seed = seed, LogEverySteps = o.LogEverySteps, Task = _task,
                RegressionScale = scale, ComputeType = computeType,
            };
            var trainer = new PeftTrainer(model, method, settings, tokenizer.PadTokenId, device);
            // Training only: scoring runs without autograd and never checkpoints.
            model.Encoder.encoder.GradientCheckpointing = o.GradientCheckpointing;
            if (o.GradientCheckpointing) ch.Info("Gradient checkpointing: on (encoder layers are recomputed in the backward pass).");
            TrainingReport report;
            try
            {
                using (Runtime.TorchThreads.Use(o.NumberOfThreads))
                    report = trainer.Train(train, validation, p =>
                    {
                        ch.Info(p.ToString());
                        o.Progress?.Invoke(p);
                    }, _host.CheckAlive, o.CancellationToken);
            }
            finally
            {
                model.Encoder.encoder.GradientCheckpointing = false;
                LayerCheckpoint.ReleaseHandedOver();
            }
            report = report with { SkippedRows = data.SkippedMissingLabel };
            if (report.StoppedAtTimeLimit) ch.Info($"Stopped at the time limit ({o.MaxTrainingTime}) in epoch {report.EpochsRun}.");
            ch.Info($"Trained {report.EpochsRun} epoch(s) in {report.Duration:hh\\:mm\\:ss}, {report.TokensPerSecond:F0} tokens/s" +
                    (report.BestValidationMetric is { } m ? $"; best validation {report.MetricName} {m:F4} at epoch {report.BestEpoch}." : "."));

            method.PrepareForInference(model);
            var trainedCopy = PeftTextTransformer.CopyTrainedTensors(model, method);
            bool merged = o.MergeForScoring && method.Merge(model);
            model.to(computeType); // merged in float32, scored in the chosen precision
            var saved = new PeftSavedModel
            {
                Task = _task, MethodJson = method.ToJson(), EncoderConfigJson = baseModel.Config.ToJson(), Pooling = model.Pooling,
                HeadDropout = o.HeadDropout, NumOutputs = numOutputs, MaxSequenceLength = maxLength, Merged = merged, Labels = labels,
                Precision = o.Precision,
                LabelShift = shift, LabelScale = scale,
                ScoreColumn = ScoreColumn, PredictedLabelColumn = _task == PeftTask.Classification ? PredictedLabelColumn : null,
                Base = new BaseModelRecord
                {
                    Kind = baseModel.Kind, Name = baseModel.Name, Sha256 = baseModel.Sha256, Origin = baseModel.Origin,
                    OriginVocabPath = baseModel.OriginVocabPath, VocabFileName = baseModel.VocabFileName, DoLowerCase = baseModel.DoLowerCase,
                    WeightsStored = baseModel.Kind == BaseModelKind.Stored || (baseModel.Kind != BaseModelKind.Embedded && o.StoreBaseModelWeights),
                },
                TokenizerKind = tokenizer.Kind, TokenizerFiles = tokenizer.ExportFiles().Keys.ToArray(),
                TrainableParameters = trainable, TotalParameters = total, TokenBudget = o.TokenBudget, NumberOfThreads = o.NumberOfThreads,
            };
            string[] inputs = o.Sentence2ColumnName is null ? [o.Sentence1ColumnName] : [o.Sentence1ColumnName, o.Sentence2ColumnName];
            var result = new PeftTextTransformer(_host, inputs, saved, model, method, tokenizer, baseModel, device, o.BatchSize, report, trainedCopy);
            handedOver = true;
            return result;
        }
        finally
        {
            if (!handedOver) model.Dispose();
        }
    }

    private static void Standardise(List<float> labels, double shift, double scale)
    {
        for (int i = 0; i < labels.Count; i++) labels[i] = (float)((labels[i] - shift) / scale);
    }
}
