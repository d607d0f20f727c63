using Microsoft.ML.Peft.BaseModels;
using Microsoft.ML.Peft.Methods;
using Microsoft.ML.Peft.Methods.Lora;
using Microsoft.ML.Peft.Modeling;
using Microsoft.ML.SearchSpace;

namespace Microsoft.ML.Peft.MLNet;

/// <summary>
/// Options shared by every PEFT text stage: columns, base model, method, and training hyper-parameters.
/// Defaults follow Hugging Face's examples for small encoders. <c>Fit</c> never writes into this object.
/// </summary>
public abstract class PeftTextOptions
{
    /// <summary>
    /// The label column: a key (classification; add <c>MapValueToKey</c>) or a float (regression). Default
    /// <c>Label</c>.
    /// </summary>
    public string LabelColumnName { get; set; } = "Label";

    /// <summary>The first (or only) text column. Default <c>Sentence1</c>, as ML.NET's own text classifier.</summary>
    public string Sentence1ColumnName { get; set; } = "Sentence1";

    /// <summary>
    /// Optional second text column for sentence-pair tasks (paraphrase, entailment, similarity). Default null.
    /// </summary>
    public string? Sentence2ColumnName { get; set; }

    /// <summary>
    /// Prefix for the output columns (<c>{prefix}Score</c>, <c>{prefix}PredictedLabel</c>), e.g. to keep two stages
    /// apart. Default empty.
    /// </summary>
    public string OutputColumnPrefix { get; set; } = "";

    /// <summary>
    /// The pretrained encoder. Default null: the embedded all-MiniLM-L6-v2 (<see cref="BaseModel.MiniLM"/>).
    /// </summary>
    public BaseModel? BaseModel { get; set; }

    /// <summary>
    /// The PEFT method and its options (e.g. <see cref="LoraConfig"/>). Default null: LoRA with r = 8, alpha = 16 on
    /// query and value.
    /// </summary>
    public PeftMethodConfig? Method { get; set; }

    /// <summary>
    /// When the base model is not embedded (a folder or ONNX file), store its weights in the model .zip so it is
    /// self-contained (default true); false stores only its path and SHA-256, checked on load.
    /// </summary>
    public bool StoreBaseModelWeights { get; set; } = true;

    /// <summary>
    /// Longest input in tokens, special tokens included; longer texts are truncated. Default 128. Sweep range: {128,
    /// 64}.
    /// </summary>
    [Choice(new object[] { 128, 64 })]
    public int MaxSequenceLength { get; set; } = 128;

    /// <summary>
    /// What happens to a text longer than <see cref="MaxSequenceLength"/>. Default
    /// <see cref="MLNet.LongTextStrategy.Truncate"/> (keep the first tokens). For sentence pairs the strategy applies
    /// to the first text; the second is kept (cut as <c>Truncate</c> cuts it when the two do not fit). Saved with the
    /// model. See docs/long-texts.md.
    /// </summary>
    public LongTextStrategy LongTextStrategy { get; set; } = LongTextStrategy.Truncate;

    /// <summary>
    /// <see cref="MLNet.LongTextStrategy.HeadAndTail"/>: tokens kept from the start of a long text; the rest of the
    /// window holds its end. Default null: a quarter of the text's room in the window (Sun et al.'s 128 of 510,
    /// rounded: 32 of 126 at the default length 128, 128 of 510 at 512). At most <see cref="MaxSequenceLength"/>
    /// − 2; a pair's shorter room cuts it further. Only with HeadAndTail.
    /// </summary>
    public int? HeadTokens { get; set; }

    /// <summary>
    /// <see cref="MLNet.LongTextStrategy.SlidingWindow"/>: tokens between the starts of consecutive windows. Default
    /// null: half the text's room in a window (63 at length 128), so each token is seen in about two windows. At
    /// least 1, at most <see cref="MaxSequenceLength"/> − 2 (a pair's shorter room caps it, so no token is skipped).
    /// Only with SlidingWindow.
    /// </summary>
    public int? WindowStride { get; set; }

    /// <summary>
    /// <see cref="MLNet.LongTextStrategy.SlidingWindow"/>: how a document's window scores combine. Default
    /// <see cref="MLNet.WindowPooling.Mean"/>.
    /// </summary>
    public WindowPooling WindowPooling { get; set; } = WindowPooling.Mean;

    /// <summary>
    /// <see cref="MLNet.LongTextStrategy.SlidingWindow"/>: most windows per document, for training and scoring alike,
    /// so one huge document cannot take over a batch or an epoch. A document with more windows keeps this many,
    /// spread evenly from its first window to its last (both kept). Default 8 (at the default stride, about 4.5
    /// windows' worth of text, ~570 tokens at length 128, is covered without gaps).
    /// </summary>
    public int MaxWindowsPerDocument { get; set; } = 8;

    /// <summary>
    /// Rows per optimizer step (and per scoring batch). Default null: 16 below 1,000 training rows, else 32, so that
    /// small data gets more optimizer steps per epoch; scoring then uses 32. Sweep range: {32, 16}.
    /// </summary>
    [Choice(new object[] { 32, 16 })]
    public int? BatchSize { get; set; }

    /// <summary>
    /// Upper bound on padded tokens (rows × longest row) per training and scoring batch, on top of
    /// <see cref="BatchSize"/>; batches come from length-sorted windows so padding stays small. 0 (the default) bounds
    /// batches by rows only.
    /// </summary>
    public int TokenBudget { get; set; }

    /// <summary>
    /// Passes over the training data. Default null: chosen from the data size, because a learning-rate schedule needs
    /// optimizer steps, not epochs: enough epochs for 300 steps (at least 3, at most 40; on large data no more than
    /// 20,000 steps, at least one epoch). 300 rows at batch 16 train for 16 epochs of 19 steps; 3,000 rows at batch 32
    /// for 4 epochs, 5,000 rows for 3.
    /// Left unset with no <see cref="ValidationSet"/>, data of 50 to 10,000 rows also gets an automatic validation
    /// split (<see cref="ValidationFraction"/>). The chosen plan is logged and kept in
    /// <see cref="PeftTextTransformer.TrainingReport"/>. Sweep range: 1 to 5, starting at 1 (the cheap end).
    /// </summary>
    [Range(1, 5, 1, false)]
    public int? Epochs { get; set; }

    /// <summary>
    /// Peak learning rate of AdamW. Default null: the method's own default
    /// (<see cref="PeftMethodConfig.DefaultLearningRate"/>: 2e-3 for LoRA, 3e-5 for full fine-tuning). Sweep range:
    /// 1e-4 to 1e-2, log scale, starting at 2e-3.
    /// </summary>
    [Range(1e-4, 1e-2, 2e-3, true)]
    public double? LearningRate { get; set; }

    /// <summary>
    /// Peak learning rate of the task head (<c>classifier</c>). Default null: the larger of the learning rate and 1e-3.
    /// A new head starts from nothing while the method only adjusts a pretrained encoder, so methods with small rates
    /// (full fine-tuning's 3e-5) would otherwise starve it on small data, many classes most of all.
    /// </summary>
    public double? HeadLearningRate { get; set; }

    /// <summary>AdamW weight decay (not applied to biases and LayerNorm). Default 0.01.</summary>
    public double WeightDecay { get; set; } = 0.01;

    /// <summary>Fraction of steps with linear learning-rate warm-up before the linear decay. Default 0.06.</summary>
    public double WarmupRatio { get; set; } = 0.06;

    /// <summary>Gradient norm clipping; 0 disables it. Default 1.0.</summary>
    public double MaxGradNorm { get; set; } = 1.0;

    /// <summary>
    /// Optional validation data (same columns); with it, each epoch is scored and the best epoch's weights are kept.
    /// Default null.
    /// </summary>
    public IDataView? ValidationSet { get; set; }

    /// <summary>
    /// Share of the training rows held out for validation when no <see cref="ValidationSet"/> is given: each epoch is
    /// scored on them, the best epoch is kept and training stops early. Classes are held out in proportion (at least
    /// one row of each class with two or more). Default null: 0.15 when <see cref="Epochs"/> is unset and the data has
    /// 50 to 10,000 rows, else none. 0 turns it off; a value in (0, 0.5] holds out that share whatever the epochs.
    /// </summary>
    public double? ValidationFraction { get; set; }

    /// <summary>
    /// After a run validated on held-out rows (<see cref="ValidationFraction"/>), train again from the start on all
    /// rows for the best epoch count, so that the held-out rows are learned from too. Doubles the training time.
    /// Default false: the model of the validated run is kept.
    /// </summary>
    public bool RefitOnAllRows { get; set; }

    /// <summary>
    /// With validation: stop after this many epochs without improvement; 0 never stops early. Default null: a quarter
    /// of the planned epochs (at least 2) when the rows were held out automatically, else 0.
    /// </summary>
    public int? EarlyStoppingPatience { get; set; }

    /// <summary>
    /// How token states become the row vector for the head. Default <see cref="Pooling.Auto"/> (pooler if the
    /// checkpoint has one, else mean).
    /// </summary>
    public Pooling Pooling { get; set; } = Pooling.Auto;

    /// <summary>
    /// How a sentence pair (<see cref="Sentence2ColumnName"/> set) is encoded. Default <see cref="PairEncoding.Auto"/>:
    /// each sentence alone with a <c>[u, v, |u − v|, u ∗ v]</c> head (Sentence-BERT) on a sentence-embedding base
    /// with WordPiece token types, such as the embedded MiniLM (pooled by mean when <see cref="Pooling"/> is Auto); one
    /// joined sequence otherwise. Ignored for single texts.
    /// </summary>
    public PairEncoding PairEncoding { get; set; } = PairEncoding.Auto;

    /// <summary>
    /// Dropout on the encoder's attention probabilities during training. Default null: the base model's own value (0.1
    /// for BERT and MiniLM), as Hugging Face trains. 0 lets libtorch use its fused attention kernel while training,
    /// which on this project's CPU made a training step 3.4× faster at 512 tokens (1.1–1.2× at 64–128) and stops
    /// memory from growing with the square of the length; see docs/performance.md for the accuracy cost.
    /// </summary>
    public double? AttentionDropout { get; set; }

    /// <summary>Dropout before the head during training. Default 0.1. Sweep range: 0 to 0.3.</summary>
    [Range(0.0, 0.3, 0.1, false)]
    public double HeadDropout { get; set; } = 0.1;

    /// <summary>
    /// Fold the method's update into the base weights for scoring where the method allows it. Default true.
    /// </summary>
    public bool MergeForScoring { get; set; } = true;

    /// <summary>
    /// Compute precision for training and scoring. Default <see cref="Training.PeftPrecision.Auto"/>: bfloat16 where
    /// the CPU supports it natively (AVX512-BF16 or AMX), else float32. Stored in the model; a loaded model resolves it
    /// again on the machine that loads it, so a bf16-trained model scores in float32 on a CPU without bf16 (and the
    /// other way round).
    /// </summary>
    public Training.PeftPrecision Precision { get; set; } = Training.PeftPrecision.Auto;

    /// <summary>
    /// Stops training once this much time has passed, keeping the weights reached (with a <see cref="ValidationSet"/>,
    /// the best scored point). The learning-rate schedule then follows whichever is further along, steps or time, so
    /// the rate still warms up and decays to zero by the deadline: set <see cref="Epochs"/> high to "train for N
    /// minutes". Default null: no time limit.
    /// </summary>
    public TimeSpan? MaxTrainingTime { get; set; }

    /// <summary>
    /// Recompute each encoder layer's activations during the backward pass instead of keeping them, trading about one
    /// more forward pass of compute for activation memory that no longer grows with the number of layers (as Hugging
    /// Face's <c>gradient_checkpointing_enable()</c>). Worth it for long sequences or large batches. Default false.
    /// </summary>
    public bool GradientCheckpointing { get; set; }

    /// <summary>
    /// The most memory training may add to the process, in bytes: peak resident memory while training, above what the
    /// process held when <c>Fit</c> began. Before the first step the stage runs two measuring passes on the longest
    /// training row (one row, then three) and chooses how many rows one forward and backward pass may hold; a batch
    /// that does not fit trains as several passes whose gradients are added up before the optimizer step, so
    /// <see cref="BatchSize"/> stays the effective batch and the run is the same. Where the batch does not fit and
    /// <see cref="AttentionDropout"/> is unset, attention dropout is turned off first if that fits more rows
    /// (libtorch's fused attention kernel never holds the s × s scores); where passes would still hold fewer than four
    /// rows, gradient checkpointing is turned on if that fits more. The decision is logged and kept in
    /// <see cref="Training.TrainingReport.Memory"/>. Default null: a quarter of the memory the machine has available
    /// when <c>Fit</c> begins, at least 512 MiB and at most 3 GiB. 0 turns the budget off (every batch in one pass,
    /// nothing measured).
    /// </summary>
    public long? MaxTrainingMemory { get; set; }

    /// <summary>
    /// libtorch intra-op threads for training and for this stage's scoring; applied to the thread that trains or scores
    /// and restored afterwards. Default null: libtorch's default (one per core).
    /// </summary>
    public int? NumberOfThreads { get; set; }

    /// <summary>
    /// The runtime the trained stage scores with. Default <see cref="MLNet.ScoringEngine.Auto"/>: ONNX Runtime where it
    /// is the faster engine on this machine, else TorchSharp. Saved with the model.
    /// </summary>
    public ScoringEngine ScoringEngine { get; set; } = ScoringEngine.Auto;

    /// <summary>
    /// With <see cref="ScoringEngine"/> = OnnxRuntime, score with TorchSharp (and log a warning) when ONNX Runtime's
    /// native library cannot load, instead of failing. Default false, as ML.NET's <c>fallbackToCpu</c>.
    /// </summary>
    public bool FallbackToTorchSharp { get; set; }

    /// <summary>Log a progress line every this many optimizer steps. Default 20.</summary>
    public int LogEverySteps { get; set; } = 20;

    /// <summary>
    /// Cancels training cooperatively (as does <c>MLContext.CancelExecution</c>); a cancelled <c>Fit</c> throws and
    /// leaves nothing behind.
    /// </summary>
    public CancellationToken CancellationToken { get; set; }

    /// <summary>
    /// A Hugging Face <c>peft</c> adapter folder (LoRA, rsLoRA, DoRA, AdaLoRA or (IA)³ for a
    /// <c>BertForSequenceClassification</c>, as <c>SavePretrained</c> writes) to continue fine-tuning from, as
    /// <c>PeftModel.from_pretrained(..., is_trainable=True)</c> does. Default null: a fresh adapter. The adapter's
    /// <c>adapter_config.json</c> decides the method and its options (leave <see cref="Method"/> null, or give the same
    /// method); its classifier is the starting head, its <c>config.json</c> <c>id2label</c> must hold the label
    /// column's key values, and the stage pools through the pooler, pairs cross-encoded, as the adapter's model does.
    /// See docs/huggingface.md.
    /// </summary>
    public string? InitialAdapterFolder { get; set; }

    /// <summary>
    /// With <see cref="InitialAdapterFolder"/>: accept a <see cref="BaseModel"/> whose name differs from the adapter's
    /// <c>base_model_name_or_path</c> (the tensor shapes are still checked). Default false.
    /// </summary>
    public bool AllowDifferentBaseModelName { get; set; }

    /// <summary>Optional callback for each progress report (the same reports go to <c>MLContext.Log</c>).</summary>
    public Action<Training.TrainingProgress>? Progress { get; set; }

    /// <summary>The smallest <see cref="MaxTrainingMemory"/> accepted (other than 0): 64 MiB.</summary>
    public const long MinTrainingMemory = 64L << 20;

    internal PeftTextOptions CloneOptions()
    {
        var copy = (PeftTextOptions)MemberwiseClone();
        copy.Method = (Method ?? new LoraConfig()).Clone();
        return copy;
    }

    internal void Validate()
    {
        static void Check(bool ok, string option, string message)
        {
            if (!ok) throw new ArgumentOutOfRangeException(option, $"Option '{option}' {message}");
        }
        Check(!string.IsNullOrWhiteSpace(LabelColumnName), nameof(LabelColumnName), "must name a column.");
        Check(!string.IsNullOrWhiteSpace(Sentence1ColumnName), nameof(Sentence1ColumnName), "must name a column.");
        Check(Sentence2ColumnName is null || Sentence2ColumnName != Sentence1ColumnName, nameof(Sentence2ColumnName),
            "must differ from Sentence1ColumnName.");
        Check(MaxSequenceLength >= 8, nameof(MaxSequenceLength), $"must be at least 8, got {MaxSequenceLength}.");
        CheckLongText(Check);
        Check(BatchSize is null or >= 1, nameof(BatchSize), $"must be at least 1, got {BatchSize}.");
        Check(Epochs is null or >= 1, nameof(Epochs), $"must be at least 1, got {Epochs}.");
        Check(TokenBudget == 0 || TokenBudget >= MaxSequenceLength, nameof(TokenBudget),
            $"must be 0 or at least MaxSequenceLength ({MaxSequenceLength}), got {TokenBudget}.");
        Check(LearningRate is null || (LearningRate > 0 && double.IsFinite(LearningRate.Value)),
            nameof(LearningRate), $"must be positive, got {LearningRate}.");
        Check(WeightDecay >= 0, nameof(WeightDecay), $"must not be negative, got {WeightDecay}.");
        Check(WarmupRatio is >= 0 and < 1, nameof(WarmupRatio), $"must be in [0, 1), got {WarmupRatio}.");
        Check(MaxGradNorm >= 0, nameof(MaxGradNorm), $"must not be negative, got {MaxGradNorm}.");
        Check(HeadLearningRate is null || (HeadLearningRate > 0 && double.IsFinite(HeadLearningRate.Value)),
            nameof(HeadLearningRate), $"must be positive, got {HeadLearningRate}.");
        Check(EarlyStoppingPatience is null or >= 0, nameof(EarlyStoppingPatience),
            $"must not be negative, got {EarlyStoppingPatience}.");
        Check(ValidationFraction is null or (>= 0 and <= 0.5), nameof(ValidationFraction),
            $"must be in [0, 0.5], got {ValidationFraction}.");
        Check(ValidationFraction is null or 0 || ValidationSet is null, nameof(ValidationFraction),
            "must be unset or 0 when a ValidationSet is given.");
        Check(EarlyStoppingPatience is null or 0 || ValidationSet is not null || ValidationFraction > 0
            || (ValidationFraction is null && Epochs is null), nameof(EarlyStoppingPatience),
            "needs a ValidationSet or a ValidationFraction.");
        Check(!RefitOnAllRows || ValidationSet is null, nameof(RefitOnAllRows),
            "refits after a held-out split (ValidationFraction); it cannot be used with a ValidationSet.");
        Check(PairEncoding != PairEncoding.BiEncoder || Sentence2ColumnName is not null, nameof(PairEncoding),
            "BiEncoder encodes sentence pairs: set Sentence2ColumnName, or leave PairEncoding at Auto.");
        Check(HeadDropout is >= 0 and < 1, nameof(HeadDropout), $"must be in [0, 1), got {HeadDropout}.");
        Check(AttentionDropout is null or (>= 0 and < 1), nameof(AttentionDropout),
            $"must be in [0, 1), got {AttentionDropout}.");
        Check(LogEverySteps >= 1, nameof(LogEverySteps), $"must be at least 1, got {LogEverySteps}.");
        Check(MaxTrainingTime is null || MaxTrainingTime > TimeSpan.Zero, nameof(MaxTrainingTime),
            $"must be positive, got {MaxTrainingTime}.");
        Check(MaxTrainingMemory is null or 0 or >= MinTrainingMemory, nameof(MaxTrainingMemory),
            $"must be 0 (no budget) or at least {MinTrainingMemory} bytes (64 MiB), got {MaxTrainingMemory}.");
        Check(NumberOfThreads is null || NumberOfThreads >= 1, nameof(NumberOfThreads),
            $"must be at least 1, got {NumberOfThreads}.");
        (Method ?? new LoraConfig()).Validate();
    }

    // The long-text options, each against the strategy that reads it, so a value that would be ignored is an error.
    private void CheckLongText(Action<bool, string, string> check)
    {
        int room = MaxSequenceLength - 2;
        check(Enum.IsDefined(LongTextStrategy), nameof(LongTextStrategy), $"has unknown value {LongTextStrategy}.");
        check(Enum.IsDefined(WindowPooling), nameof(WindowPooling), $"has unknown value {WindowPooling}.");
        check(HeadTokens is null || (HeadTokens >= 0 && HeadTokens <= room), nameof(HeadTokens),
            $"must be in [0, MaxSequenceLength - 2 = {room}], got {HeadTokens}.");
        check(HeadTokens is null || LongTextStrategy == LongTextStrategy.HeadAndTail, nameof(HeadTokens),
            $"is only used with LongTextStrategy HeadAndTail (it is {LongTextStrategy}); leave it unset.");
        check(WindowStride is null || (WindowStride >= 1 && WindowStride <= room), nameof(WindowStride),
            $"must be in [1, MaxSequenceLength - 2 = {room}], got {WindowStride}.");
        check(WindowStride is null || LongTextStrategy == LongTextStrategy.SlidingWindow, nameof(WindowStride),
            $"is only used with LongTextStrategy SlidingWindow (it is {LongTextStrategy}); leave it unset.");
        check(MaxWindowsPerDocument >= 1, nameof(MaxWindowsPerDocument),
            $"must be at least 1, got {MaxWindowsPerDocument}.");
    }
}

/// <summary>Options of a PEFT text classification stage (single-label; binary is two classes).</summary>
public sealed class PeftTextClassificationOptions : PeftTextOptions
{
    /// <summary>Name of the class-probability vector column. Default <c>Score</c>.</summary>
    public string ScoreColumnName { get; set; } = "Score";

    /// <summary>Name of the predicted key column. Default <c>PredictedLabel</c>.</summary>
    public string PredictedLabelColumnName { get; set; } = "PredictedLabel";
}

/// <summary>Options of a PEFT text regression stage (one float per row, e.g. STS-B similarity).</summary>
public sealed class PeftTextRegressionOptions : PeftTextOptions
{
    /// <summary>Name of the predicted value column. Default <c>Score</c>.</summary>
    public string ScoreColumnName { get; set; } = "Score";
}
