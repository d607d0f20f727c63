using Microsoft.ML.Peft.BaseModels;
using Microsoft.ML.Peft.Methods;
using Microsoft.ML.Peft.Methods.Lora;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Peft.Training;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.Peft;

/// <summary>Adds <c>mlContext.Peft()</c>.</summary>
public static class PeftMLContextExtensions
{
    /// <summary>The catalog of parameter-efficient fine-tuning stages.</summary>
    public static PeftCatalog Peft(this MLContext mlContext) =>
        new(mlContext ?? throw new ArgumentNullException(nameof(mlContext)));
}

/// <summary>
/// Parameter-efficient fine-tuning stages for text. Every method goes through the same two stages:
/// <see cref="TextClassification(PeftTextClassificationOptions)"/> and
/// <see cref="TextRegression(PeftTextRegressionOptions)"/> with a <see cref="PeftMethodConfig"/> in the options; the
/// per-method shortcuts below fill that in.
/// </summary>
public sealed class PeftCatalog
{
    private readonly IHostEnvironment _env;

    internal PeftCatalog(IHostEnvironment env) => _env = env;

    /// <summary>
    /// Text classification with any PEFT method (<see cref="PeftTextOptions.Method"/>; LoRA when unset).
    /// </summary>
    public PeftTextEstimator TextClassification(PeftTextClassificationOptions options) =>
        new(_env, options ?? throw new ArgumentNullException(nameof(options)), PeftTask.Classification);

    /// <summary>
    /// An AutoML-style sweep over PEFT methods and hyper-parameters (see <see cref="Sweep.PeftSweep"/>).
    /// </summary>
    public Sweep.PeftSweep CreateSweep() => new(_env as MLContext
        ?? throw new InvalidOperationException("CreateSweep needs the catalog of an MLContext."));

    /// <summary>
    /// A weighted average of trained stages with the same task, label values and text columns (see
    /// <see cref="PeftEnsembleTransformer"/>); equal weights when <paramref name="weights"/> is null. The ensemble owns
    /// the stages.
    /// </summary>
    public PeftEnsembleTransformer Ensemble(IEnumerable<PeftTextTransformer> members,
        IEnumerable<double>? weights = null) =>
        new(_env, [.. members ?? throw new ArgumentNullException(nameof(members))], weights?.ToArray());

    /// <summary>
    /// A ready <see cref="PeftTextTransformer"/> (it scores without training) from a Hugging Face folder: a
    /// <c>peft</c> sequence-classification adapter (LORA with rsLoRA or DoRA, ADALORA, IA3; as <c>SavePretrained</c>
    /// or peft's <c>save_pretrained</c> writes it) for a BERT-family base, or a merged <c>transformers</c>
    /// <c>BertForSequenceClassification</c> folder (as <c>SaveMergedPretrained</c> writes it). Only safetensors
    /// files are read; nothing in the folder is executed. Labels come from the folder's <c>config.json</c>
    /// (<c>id2label</c>) unless <see cref="PeftPretrainedOptions.Labels"/> names them. See docs/huggingface.md.
    /// </summary>
    /// <param name="folder">The adapter (or merged model) folder.</param>
    /// <param name="baseModel">The base the adapter was trained on; null for an embedded base the adapter names
    /// (<c>sentence-transformers/all-MiniLM-L6-v2</c>, <c>Snowflake/snowflake-arctic-embed-xs</c>) and for a merged
    /// folder, which is its own base.</param>
    /// <param name="options">Columns, labels and scoring; null for the defaults.</param>
    /// <exception cref="FileNotFoundException">The folder has no <c>adapter_config.json</c> (nor a merged model), or
    /// no <c>adapter_model.safetensors</c>.</exception>
    /// <exception cref="PeftModelFormatException">A key or tensor does not fit: the message names the file and the
    /// key or tensor (unknown <c>peft_type</c>, a <c>target_modules</c> entry that matches no layer, a shape that
    /// does not fit the base, a base other than <c>base_model_name_or_path</c>).</exception>
    /// <exception cref="NotSupportedException">The adapter's method is one this library cannot compute as peft
    /// does (prefix or prompt tuning).</exception>
    public PeftTextTransformer FromPretrained(string folder, BaseModels.BaseModel? baseModel = null,
        PeftPretrainedOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(folder);
        var o = options ?? new PeftPretrainedOptions();
        var resolved = HuggingFace.PeftImporter.ResolveBase(folder, baseModel);
        var adapter = HuggingFace.PeftImporter.Read(folder, resolved, o.Labels, o.AllowDifferentBaseModelName);
        return PeftTextTransformer.FromImported(_env, adapter, resolved, o);
    }

    /// <summary>Text regression (one float per row) with any PEFT method.</summary>
    public PeftTextEstimator TextRegression(PeftTextRegressionOptions options) =>
        new(_env, options ?? throw new ArgumentNullException(nameof(options)), PeftTask.Regression);

    /// <summary>
    /// LoRA text classification: the label must be a key (use <c>MapValueToKey</c>); outputs <c>Score</c> and
    /// <c>PredictedLabel</c>.
    /// </summary>
    /// <param name="labelColumnName">Key label column.</param>
    /// <param name="sentence1ColumnName">Text column.</param>
    /// <param name="sentence2ColumnName">Optional second text column for sentence pairs.</param>
    /// <param name="rank">LoRA rank r.</param>
    /// <param name="alpha">LoRA alpha; the update is scaled by alpha / r.</param>
    /// <param name="epochs">Passes over the data; null (default) chooses them from the row count
    /// (<see cref="PeftTextOptions.Epochs"/>).</param>
    /// <param name="batchSize">Rows per batch; null (default) chooses it from the row count
    /// (<see cref="PeftTextOptions.BatchSize"/>).</param>
    /// <param name="learningRate">Peak learning rate; null for LoRA's default (2e-3).</param>
    /// <param name="maxSequenceLength">Longest input in tokens.</param>
    /// <param name="baseModel">Pretrained encoder; null for the embedded all-MiniLM-L6-v2.</param>
    public PeftTextEstimator LoraTextClassification(string labelColumnName = "Label",
        string sentence1ColumnName = "Sentence1",
        string? sentence2ColumnName = null, int rank = 8, double alpha = 16, int? epochs = null, int? batchSize = null,
        double? learningRate = null, int maxSequenceLength = 128, BaseModel? baseModel = null) =>
        TextClassification(new PeftTextClassificationOptions
        {
            LabelColumnName = labelColumnName, Sentence1ColumnName = sentence1ColumnName,
            Sentence2ColumnName = sentence2ColumnName,
            Method = new LoraConfig { Rank = rank, Alpha = alpha }, Epochs = epochs, BatchSize = batchSize,
            LearningRate = learningRate,
            MaxSequenceLength = maxSequenceLength, BaseModel = baseModel,
        });

    /// <summary>
    /// LoRA text classification with full options; <see cref="PeftTextOptions.Method"/> must be a
    /// <see cref="LoraConfig"/> or null.
    /// </summary>
    public PeftTextEstimator LoraTextClassification(PeftTextClassificationOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.Method is not (null or LoraConfig))
            throw new ArgumentOutOfRangeException(nameof(options),
                $"Option 'Method' is {options.Method.MethodName}; LoraTextClassification needs a LoraConfig " +
                "(or use TextClassification).");
        return TextClassification(options);
    }

    /// <summary>LoRA text regression; the label is a float column.</summary>
    /// <param name="labelColumnName">Float label column.</param>
    /// <param name="sentence1ColumnName">Text column.</param>
    /// <param name="sentence2ColumnName">Optional second text column for sentence pairs.</param>
    /// <param name="rank">LoRA rank r.</param>
    /// <param name="epochs">Passes over the data; null (default) chooses them from the row count
    /// (<see cref="PeftTextOptions.Epochs"/>).</param>
    /// <param name="baseModel">Pretrained encoder; null for the embedded all-MiniLM-L6-v2.</param>
    public PeftTextEstimator LoraTextRegression(string labelColumnName = "Label",
        string sentence1ColumnName = "Sentence1",
        string? sentence2ColumnName = null, int rank = 8, int? epochs = null, BaseModel? baseModel = null) =>
        TextRegression(new PeftTextRegressionOptions
        {
            LabelColumnName = labelColumnName, Sentence1ColumnName = sentence1ColumnName,
            Sentence2ColumnName = sentence2ColumnName,
            Method = new LoraConfig { Rank = rank }, Epochs = epochs, BaseModel = baseModel,
        });
}
