using TorchSharp;
using System.Globalization;
using Microsoft.ML.Data;
using Microsoft.ML.Peft.BaseModels;
using Microsoft.ML.Peft.Inference;
using Microsoft.ML.Peft.Modeling;
using Microsoft.ML.Peft.Training;
using Microsoft.ML.Peft.Tokenization;
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
    private readonly bool _methodGiven;

    internal PeftTextEstimator(IHostEnvironment env, PeftTextOptions options, PeftTask task)
    {
        _host = env.Register(nameof(PeftTextEstimator));
        options.Validate();
        _methodGiven = options.Method is not null;
        _options = options.CloneOptions();
        _task = task;
    }

    private string ScoreColumn => _options.OutputColumnPrefix + (_options is PeftTextClassificationOptions c
        ? c.ScoreColumnName
        : ((PeftTextRegressionOptions)_options).ScoreColumnName);
    private string PredictedLabelColumn =>
        _options.OutputColumnPrefix + ((PeftTextClassificationOptions)_options).PredictedLabelColumnName;

    /// <inheritdoc/>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema)
    {
        void RequireText(string name, string option)
        {
            if (!inputSchema.TryFindColumn(name, out var col))
                throw new ArgumentOutOfRangeException(option,
                    $"Text column '{name}' (option '{option}') was not found in the input.");
            if (col.Kind != SchemaShape.Column.VectorKind.Scalar || col.ItemType is not TextDataViewType)
                throw new ArgumentOutOfRangeException(option,
                    $"Column '{name}' (option '{option}') must be Text (string), but is {col.ItemType}.");
        }
        RequireText(_options.Sentence1ColumnName, nameof(PeftTextOptions.Sentence1ColumnName));
        if (_options.Sentence2ColumnName is { } s2) RequireText(s2, nameof(PeftTextOptions.Sentence2ColumnName));
        var columns = inputSchema.ToDictionary(c => c.Name);
        if (!inputSchema.TryFindColumn(_options.LabelColumnName, out var label))
            throw new ArgumentOutOfRangeException(nameof(PeftTextOptions.LabelColumnName),
                $"Label column '{_options.LabelColumnName}' was not found in the input.");
        if (_task == PeftTask.Regression)
        {
            columns[ScoreColumn] = new SchemaShape.Column(ScoreColumn, SchemaShape.Column.VectorKind.Scalar,
                NumberDataViewType.Single, false);
            return new SchemaShape(columns.Values);
        }
        if (!label.IsKey)
            throw new ArgumentOutOfRangeException(nameof(PeftTextOptions.LabelColumnName),
                $"Label column '{label.Name}' must be a key type for classification, but is {label.ItemType}. " +
                $"Add mlContext.Transforms.Conversion.MapValueToKey(\"{label.Name}\") before this stage.");
        var keyValues = label.Annotations.Where(a => a.Name == AnnotationUtils.Kinds.KeyValues).ToArray();
        columns[ScoreColumn] = new SchemaShape.Column(ScoreColumn, SchemaShape.Column.VectorKind.Vector,
            NumberDataViewType.Single, false,
            new SchemaShape(keyValues.Select(k => new SchemaShape.Column(AnnotationUtils.Kinds.SlotNames,
                SchemaShape.Column.VectorKind.Vector, TextDataViewType.Instance, false))));
        columns[PredictedLabelColumn] = new SchemaShape.Column(PredictedLabelColumn,
            SchemaShape.Column.VectorKind.Scalar, NumberDataViewType.UInt32, true, new SchemaShape(keyValues));
        return new SchemaShape(columns.Values);
    }

    /// <inheritdoc/>
    public PeftTextTransformer Fit(IDataView input)
    {
        using var ch = _host.Start("Training");
        Runtime.TorchRuntime.EnsureLoaded();
        // The memory budget counts what this fit adds to the process, from here.
        long startResident = Runtime.ProcessMemory.Resident() ?? 0;
        var o = _options;
        var schema = input.Schema;
        SchemaChecks.Text(schema, o.Sentence1ColumnName, nameof(PeftTextOptions.Sentence1ColumnName));
        if (o.Sentence2ColumnName is not null)
            SchemaChecks.Text(schema, o.Sentence2ColumnName, nameof(PeftTextOptions.Sentence2ColumnName));
        var labelColumn = SchemaChecks.Label(schema, o.LabelColumnName, _task);
        KeyValueList? labels = _task == PeftTask.Classification ? KeyValueList.FromKeyColumn(labelColumn) : null;
        int numOutputs = labels?.Count ?? 1;

        var data = TrainingData.Read(input, o.LabelColumnName, o.Sentence1ColumnName, o.Sentence2ColumnName, _task,
            _host.CheckAlive);
        if (data.SkippedMissingLabel > 0)
            ch.Warning($"Skipped {data.SkippedMissingLabel} training row(s) with a missing label in column " +
                $"'{o.LabelColumnName}'.");
        if (data.SkippedNonFiniteLabel > 0)
            ch.Warning($"Skipped {data.SkippedNonFiniteLabel} training row(s) with an infinite label in column " +
                $"'{o.LabelColumnName}'.");
        if (data.RepairedTextRows > 0)
            ch.Info($"Repaired {data.RepairedTextRows} training row(s) whose text held invalid UTF-16 (lone " +
                $"surrogates replaced with U+FFFD).");
        if (data.Count == 0)
            throw new InvalidOperationException(
                $"The training data has no rows with a label in column '{o.LabelColumnName}'.");
        if (_task == PeftTask.Classification && data.Labels.Distinct().Count() < 2)
            throw new InvalidOperationException(
                $"The training data has only one class in label column '{o.LabelColumnName}' " +
                $"('{labels!.Values[(int)data.Labels[0]]}'); a classifier needs at least two.");

        TrainingData? valid = null;
        if (o.ValidationSet is not null)
        {
            SchemaChecks.Text(o.ValidationSet.Schema, o.Sentence1ColumnName, nameof(PeftTextOptions.ValidationSet));
            SchemaChecks.Label(o.ValidationSet.Schema, o.LabelColumnName, _task);
            valid = TrainingData.Read(o.ValidationSet, o.LabelColumnName, o.Sentence1ColumnName, o.Sentence2ColumnName,
                _task, _host.CheckAlive);
        }

        var scaler = _task == PeftTask.Regression ? LabelScaler.Fit(data.Labels) : LabelScaler.Identity;
        scaler.Standardise(data.Labels);
        if (valid is not null) scaler.Standardise(valid.Labels);

        var baseModel = o.BaseModel ?? BaseModel.Default;
        var tokenizer = baseModel.CreateTokenizer();
        // Continuing from a peft adapter: its config decides the method and its classifier the starting head.
        var initial = o.InitialAdapterFolder is null ? null : ReadInitialAdapter(o, baseModel);
        var pairEncoding = initial is null ? ResolvePairEncoding(o, baseModel, tokenizer.Kind)
            : PairEncoding.CrossEncoder;
        var method = initial?.Method ?? o.Method!;
        // peft-layout prefix and prompt tuning take positions from the text.
        int maxLength = Math.Min(o.MaxSequenceLength, method.TextPositions(baseModel.Config));
        if (maxLength < 8)
            throw new ArgumentOutOfRangeException("NumVirtualTokens", $"Option 'NumVirtualTokens' "
                + $"({method.ReservedPositions}, PeftLayout) leaves {maxLength} of base model '{baseModel.Name}''s "
                + $"{baseModel.Config.MaxSequenceLength} positions for the text; use fewer virtual tokens.");
        var longText = LongTextSettings.From(o, maxLength);
        var encoder = new RowEncoder(tokenizer, maxLength, pair: o.Sentence2ColumnName is not null, longText, _task);
        var rows = Example.Zip(encoder.EncodeAll(data.First, data.Second), data.Labels);
        IReadOnlyList<Example>? validation = valid is null ? null
            : Example.Zip(encoder.EncodeAll(valid.First, valid.Second), valid.Labels);

        var initialTensors = initial is null ? null
            : HuggingFace.InitialAdapter.Fit(initial, o.InitialAdapterFolder!, _task, labels, scaler);
        var device = PeftDevice.Resolve(_host, ch);
        // Method weights (e.g. LoRA's A) and the head are drawn from libtorch's global generator: seed it from the
        // MLContext first, so a given seed always gives the same model.
        int seed = _host.Rand.Next();
        var plan = Plan(rows, data.Labels, seed, out var train, out var heldOut);
        validation ??= heldOut;
        ch.Info($"Training plan: {plan}");
        if (longText.Strategy == LongTextStrategy.SlidingWindow)
            ch.Info($"Long texts: SlidingWindow trains on {train.Count} window(s) of {plan.TrainingRows} document(s); "
                + "validation and scoring pool each document's windows.");
        var model = Build();
        bool handedOver = false;
        try
        {
            var computeType = PrecisionPolicy.Resolve(o.Precision, device);
            ch.Info($"Precision: {(computeType == TorchSharp.torch.ScalarType.BFloat16
                ? "bfloat16 (float32 master weights, loss and softmax)"
                : "float32")} (requested {o.Precision}).");
            var (trainable, total) = model.CountParameters();
            ch.Info(string.Format(CultureInfo.InvariantCulture,
                "trainable params: {0:N0} || all params: {1:N0} || trainable%: {2:F4}",
                trainable, total, 100.0 * trainable / total));
            ch.Info($"Fine-tuning {baseModel.Name} with {method.MethodName} on {train.Count} rows " +
                $"({data.Count} read), {numOutputs} output(s), max length {maxLength}.");

            double learningRate = o.LearningRate ?? method.DefaultLearningRate;
            var settings = new TrainingSettings
            {
                BatchSize = plan.BatchSize, TokenBudget = o.TokenBudget, Epochs = plan.Epochs,
                LearningRate = learningRate,
                HeadLearningRate = o.HeadLearningRate ?? Math.Max(learningRate, DefaultMinimumHeadLearningRate),
                WeightDecay = o.WeightDecay, WarmupRatio = o.WarmupRatio, MaxGradNorm = o.MaxGradNorm,
                EarlyStoppingPatience = plan.EarlyStoppingPatience, TimeLimit = o.MaxTrainingTime, Seed = seed,
                LogEverySteps = o.LogEverySteps, Task = _task, Labels = scaler, ComputeType = computeType,
                MemoryBudget = o.MaxTrainingMemory switch
                {
                    0 => null,
                    { } bytes => bytes,
                    null => MemoryPlanner.DefaultBudget(Runtime.ProcessMemory.Available()),
                },
                StartResidentBytes = startResident, AttentionDropoutAdjustable = o.AttentionDropout is null,
            };
            var report = Train(model, settings, train, validation);
            if (plan.RefitOnAllRows)
            {
                // The held-out rows chose the epoch count; now every row trains, from the same start, for that
                // many epochs.
                var validated = report;
                model.Dispose();
                model = Build();
                ch.Info($"Refit on all {rows.Length} rows for {validated.BestEpoch} epoch(s), " +
                    "the best on the held-out rows.");
                report = Train(model, settings with { Epochs = validated.BestEpoch, EarlyStoppingPatience = 0 },
                    DocumentWindows.ForTraining(rows), null);
                report = report with
                {
                    BestEpoch = validated.BestEpoch, BestValidationMetric = validated.BestValidationMetric,
                    Duration = validated.Duration + report.Duration,
                };
            }
            report = report with { SkippedRows = data.SkippedRows, Plan = plan };
            if (report.StoppedAtTimeLimit)
                ch.Info($"Stopped at the time limit ({o.MaxTrainingTime}) in epoch {report.EpochsRun}.");
            ch.Info($"Trained {report.EpochsRun} epoch(s) in {report.Duration:hh\\:mm\\:ss}, " +
                $"{report.TokensPerSecond:F0} tokens/s" +
                    (report.BestValidationMetric is { } m
                        ? $"; best validation {report.MetricName} {m:F4} at epoch {report.BestEpoch}."
                        : "."));

            model.PrepareForInference();
            var trainedCopy = model.CopyTrainedTensors();
            bool merged = o.MergeForScoring && model.Merge();
            model.CastTo(computeType); // merged in float32, scored in the chosen precision
            var saved = new PeftSavedModel
            {
                Task = _task, MethodJson = method.ToJson(), EncoderConfigJson = baseModel.Config.ToJson(),
                Pooling = model.Pooling, HeadLayer = model.HeadLayer,
                PairEncoding = model.PairEncoding, HeadDropout = o.HeadDropout, NumOutputs = numOutputs,
                MaxSequenceLength = maxLength, Merged = merged, Labels = labels,
                LongText = longText.Strategy == LongTextStrategy.Truncate ? null : longText,
                Precision = o.Precision,
                LabelShift = scaler.Shift, LabelScale = scaler.Scale,
                ScoreColumn = ScoreColumn,
                PredictedLabelColumn = _task == PeftTask.Classification ? PredictedLabelColumn : null,
                Base = BaseModelRecord.Describe(baseModel, o.StoreBaseModelWeights),
                TokenizerKind = tokenizer.Kind, TokenizerFiles = tokenizer.ExportFiles().Keys.ToArray(),
                TrainableParameters = trainable, TotalParameters = total, TokenBudget = o.TokenBudget,
                NumberOfThreads = o.NumberOfThreads,
                ScoringEngine = o.ScoringEngine, FallbackToTorchSharp = o.FallbackToTorchSharp,
            };
            string[] inputs = o.Sentence2ColumnName is null
                ? [o.Sentence1ColumnName]
                : [o.Sentence1ColumnName, o.Sentence2ColumnName];
            var result = new PeftTextTransformer(_host, inputs, saved, model.Method, model, tokenizer, baseModel,
                device, o.BatchSize ?? PeftTransformerBase.DefaultBatchSize, report, trainedCopy);
            handedOver = true;
            return result;
        }
        finally
        {
            if (!handedOver) model.Dispose();
        }

        PeftModel Build()
        {
            torch.manual_seed(seed);
            // A bi-encoder pools as sentence-transformers do (mean), not through a pooler trained for pairs; so does a
            // frozen sentence-embedding base (the linear probe): its embedding training read the mean, never the
            // pooler (SST-2, 3,000 rows: 0.795 by mean, 0.619 through the pooler; benchmarks/README.md).
            var pooling = initial is not null ? initial.Pooling
                : o.Pooling == Pooling.Auto && (pairEncoding == PairEncoding.BiEncoder
                    || (method.FreezesEncoder && baseModel.IsSentenceEmbedding)) ? Pooling.Mean
                : o.Pooling;
            bool pooler = pooling == Pooling.Pooler || (pooling == Pooling.Auto && baseModel.HasPooler);
            var encoder = baseModel.CreateEncoder(withPooler: pooler);
            if (o.AttentionDropout is { } attentionDropout)
                foreach (var attention in encoder.modules().OfType<BertSelfAttention>())
                    attention.AttentionDropout = attentionDropout;
            var built = PeftModel.Create(encoder, method, numOutputs, pooling, o.HeadDropout, pairEncoding,
                initial?.HeadLayer ?? HeadLayer.None);
            if (initialTensors is not null)
            {
                var tensors = Onnx.TorchWeights.ToTorch(initialTensors);
                try { built.LoadTrainedTensors(tensors); }
                finally { foreach (var t in tensors.Values) t.Dispose(); }
            }
            built.to(device);
            return built;
        }

        TrainingReport Train(PeftModel target, TrainingSettings settings, IReadOnlyList<Example> trainRows,
            IReadOnlyList<Example>? validationRows)
        {
            var trainer = new PeftTrainer(target, settings, tokenizer.PadTokenId, device);
            // Training only: scoring runs without autograd and never checkpoints.
            target.Encoder.encoder.GradientCheckpointing = o.GradientCheckpointing;
            if (o.GradientCheckpointing)
                ch.Info("Gradient checkpointing: on (encoder layers are recomputed in the backward pass).");
            try
            {
                using (Runtime.TorchThreads.Use(o.NumberOfThreads))
                    return trainer.Train(trainRows, validationRows, p =>
                    {
                        ch.Info(p.ToString());
                        o.Progress?.Invoke(p);
                    }, _host.CheckAlive, o.CancellationToken, ch.Info);
            }
            finally
            {
                target.Encoder.encoder.GradientCheckpointing = false;
                LayerCheckpoint.ReleaseHandedOver();
            }
        }
    }

    /// <summary>
    /// Reads <see cref="PeftTextOptions.InitialAdapterFolder"/>, refusing options that contradict the adapter's model
    /// (another method, a pooling other than the pooler, bi-encoded pairs).
    /// </summary>
    private HuggingFace.ImportedAdapter ReadInitialAdapter(PeftTextOptions o, BaseModel baseModel)
    {
        const string Option = nameof(PeftTextOptions.InitialAdapterFolder);
        // transformers' heads: BERT's classifies the pooler output, RoBERTa's and DistilBERT's the first token's.
        var pooling = HuggingFace.TransformersNames.Pooling(baseModel.Config.Architecture);
        if (o.Pooling != Pooling.Auto && o.Pooling != pooling)
            throw new ArgumentOutOfRangeException(nameof(PeftTextOptions.Pooling), $"Option 'Pooling' is "
                + $"{o.Pooling}, but a peft sequence-classification adapter ({Option}) for a "
                + $"{baseModel.Config.Architecture} base pools with {pooling}: leave Pooling at Auto or {pooling}.");
        if (o.PairEncoding == PairEncoding.BiEncoder)
            throw new ArgumentOutOfRangeException(nameof(PeftTextOptions.PairEncoding), "Option 'PairEncoding' is "
                + $"BiEncoder, but a peft sequence-classification adapter ({Option}) reads pairs cross-encoded.");
        var adapter = HuggingFace.PeftImporter.Read(o.InitialAdapterFolder!, baseModel, null,
            o.AllowDifferentBaseModelName);
        if (_methodGiven && adapter.Method.MethodName != o.Method!.MethodName)
            throw new ArgumentException($"Option 'Method' is {o.Method.MethodName}, but the adapter in "
                + $"'{o.InitialAdapterFolder}' ({Option}) is {adapter.Method.MethodName}: leave Method null to use "
                + "the adapter's.", nameof(PeftTextOptions.Method));
        return adapter;
    }

    /// <summary>
    /// The head's learning rate never goes below this unless set (<see cref="PeftTextOptions.HeadLearningRate"/>).
    /// </summary>
    internal const double DefaultMinimumHeadLearningRate = 1e-3;

    /// <summary>
    /// Decides batch size, epochs and the held-out rows (options the user set are kept) and splits the encoded rows.
    /// </summary>
    private TrainingPlan Plan(Example[] rows, IReadOnlyList<float> labels, int seed,
        out List<Example> train, out List<Example>? heldOut)
    {
        var o = _options;
        bool classification = _task == PeftTask.Classification;
        double fraction = TrainingPlanner.ChooseValidationFraction(rows.Length, o.ValidationFraction,
            o.Epochs is not null,
            o.ValidationSet is not null);
        var mask = TrainingPlanner.StratifiedHoldOut(labels, fraction, classification, seed ^ 0x5EED);
        // Documents are split (a document's windows stay on one side); then training sees windows, validation
        // documents.
        var trainDocuments = rows.Where((_, i) => !mask[i]).ToList();
        heldOut = trainDocuments.Count < rows.Length ? rows.Where((_, i) => mask[i]).ToList() : null;
        train = DocumentWindows.ForTraining(trainDocuments);
        int batchSize = o.BatchSize ?? TrainingPlanner.ChooseBatchSize(rows.Length);
        int stepsPerEpoch = BatchPlanner.ForTraining(train.Select(e => e.Length).ToArray(), batchSize, o.TokenBudget,
            new Random(seed)).Count;
        int epochs = o.Epochs ?? TrainingPlanner.ChooseEpochs(stepsPerEpoch);
        int held = heldOut?.Count ?? 0;
        int patience = o.EarlyStoppingPatience ?? (held > 0 ? TrainingPlanner.ChoosePatience(epochs) : 0);
        return new TrainingPlan(rows.Length, trainDocuments.Count, held, batchSize, stepsPerEpoch, epochs,
            o.BatchSize is null, o.Epochs is null, patience, o.RefitOnAllRows && held > 0);
    }

    /// <summary>
    /// <see cref="PairEncoding.Auto"/> becomes a bi-encoder for pairs on a sentence-embedding base (see
    /// <see cref="BaseModel.IsSentenceEmbedding"/>) whose WordPiece tokenizer marks the second sentence with token type
    /// 1, unless <see cref="Pooling.Pooler"/> was asked for.
    /// </summary>
    internal static PairEncoding ResolvePairEncoding(PeftTextOptions o, BaseModel baseModel,
        TextTokenizerKind tokenizer)
    {
        bool typed = tokenizer == TextTokenizerKind.WordPiece && baseModel.Config.TypeVocabSize >= 2;
        if (o.PairEncoding == PairEncoding.BiEncoder && !typed)
            throw new ArgumentOutOfRangeException(nameof(PeftTextOptions.PairEncoding),
                $"Option 'PairEncoding' BiEncoder needs a WordPiece tokenizer with token types to split the pair; "
                + $"base model '{baseModel.Name}' has a {tokenizer} tokenizer. Use CrossEncoder or Auto.");
        if (o.Sentence2ColumnName is null || o.PairEncoding == PairEncoding.CrossEncoder)
            return PairEncoding.CrossEncoder;
        if (o.PairEncoding == PairEncoding.BiEncoder) return PairEncoding.BiEncoder;
        return typed && baseModel.IsSentenceEmbedding && o.Pooling != Pooling.Pooler
            ? PairEncoding.BiEncoder : PairEncoding.CrossEncoder;
    }
}
