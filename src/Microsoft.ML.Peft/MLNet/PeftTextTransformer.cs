using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Peft.BaseModels;
using Microsoft.ML.Peft.Inference;
using Microsoft.ML.Peft.Methods;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Peft.Modeling;
using Microsoft.ML.Peft.Onnx;
using Microsoft.ML.Peft.Tokenization;
using Microsoft.ML.Peft.Training;
using Google.Protobuf;
using Microsoft.ML.Runtime;
using TorchSharp;
using static TorchSharp.torch;

[assembly: LoadableClass(typeof(PeftTextTransformer), null, typeof(SignatureLoadModel),
    "PEFT text transformer", PeftTextTransformer.LoaderSignature)]

namespace Microsoft.ML.Peft.MLNet;

/// <summary>
/// A fine-tuned encoder with its task head as an ML.NET transformer. Classification adds <c>Score</c> (class
/// probabilities, slot names from the label's key values) and <c>PredictedLabel</c> (a key with the label's key
/// values); regression adds a float <c>Score</c>. Rows are scored in batches inside the cursor. Saved with
/// <c>mlContext.Model.Save</c>, it stores only what trained, the tokenizer vocabulary and the base model's identity (or
/// its weights, for non-embedded bases).
/// </summary>
public sealed partial class PeftTextTransformer : PeftTransformerBase, IDisposable
{
    internal const string LoaderSignature = "PeftTextTransformer";
    internal const string TrainedStream = "Trained.safetensors";
    internal const string BaseStream = "Base.safetensors";
    internal const string TokenizerStreamPrefix = "Tokenizer.";
    private static readonly PeftModelSignature Signature = new(LoaderSignature, "PEFTTEXT", formatVersion: 0x00010001);

    private readonly IHostEnvironment _env;
    private readonly PeftSavedModel _saved;
    private readonly PeftMethodConfig _method;
    private readonly TextTokenizer _tokenizer;
    private readonly BaseModel _base;
    // float32 copies of what trained, in managed memory: saved exactly whatever the scoring precision, and all the
    // ONNX Runtime engine needs besides the base, so a stage loaded for that engine never touches libtorch.
    private readonly Dictionary<string, FloatTensor> _trained;
    // The data path: text → tokens (_encoder) → raw head outputs (_scorer) → columns (HeadOutputs, _labels).
    private readonly RowEncoder _encoder;
    private readonly LabelScaler _labels;
    // The libtorch model and engine: given by Fit, built on first use for a loaded stage (never, when it scores with
    // ONNX Runtime and nobody asks for Model).
    private readonly object _torchGate = new();
    private PeftModel? _model;
    private Device? _device;
    private TorchScorer? _torchScorer;
    // The engine in use, chosen on first use (an explicit OnnxRuntime at once, so a missing runtime fails early) and
    // swapped whole when the engine or its threads change.
    private readonly object _engineGate = new();
    private IScorer? _scorer;
    private OnnxScorer? _onnxScorer;

    internal PeftTextTransformer(IHostEnvironment env, string[] inputColumns, PeftSavedModel saved,
        PeftMethodConfig method, PeftModel? model, TextTokenizer tokenizer, BaseModel baseModel, Device? device,
        int batchSize, TrainingReport? report, Dictionary<string, FloatTensor> trained)
        : base(env, nameof(PeftTextTransformer), inputColumns, batchSize)
    {
        _env = env; _saved = saved; _method = method; _model = model; _tokenizer = tokenizer; _base = baseModel;
        _device = device; _trained = trained;
        TrainingReport = report;
        _model?.Freeze();
        _encoder = new RowEncoder(tokenizer, saved.MaxSequenceLength, pair: inputColumns.Length > 1, saved.LongText,
            saved.Task);
        _labels = new LabelScaler(saved.LabelShift, saved.LabelScale);
        if (saved.ScoringEngine == ScoringEngine.OnnxRuntime) _scorer = ChooseScorer();
    }

    /// <summary>
    /// Intra-op threads while this stage scores a batch: libtorch's, applied to the scoring thread and restored after
    /// each batch, or ONNX Runtime's (its session is rebuilt; do not change it while a cursor is scoring). Null (the
    /// default unless the stage options set it) leaves each runtime's default, one thread per core. Saved with the
    /// model.
    /// </summary>
    public int? NumberOfThreads
    {
        get => _saved.NumberOfThreads;
        set
        {
            if (value is < 1)
                throw new ArgumentOutOfRangeException(nameof(NumberOfThreads),
                    $"Option 'NumberOfThreads' must be at least 1, got {value}.");
            _saved.NumberOfThreads = value;
            if (_torchScorer is not null) _torchScorer.Threads = value;
            if (_onnxScorer is not null)
            {
                // ONNX Runtime fixes its threads when the session is made: make a new one.
                var old = _onnxScorer;
                _onnxScorer = null;
                lock (_engineGate) _scorer = ChooseScorer();
                old.Dispose();
            }
        }
    }

    /// <summary>
    /// Parameters that trained (method + head), as <c>peft</c>'s <c>print_trainable_parameters</c> counts them.
    /// </summary>
    public long TrainableParameterCount => _saved.TrainableParameters;

    /// <summary>All parameters of the model (base + method + head).</summary>
    public long TotalParameterCount => _saved.TotalParameters;

    /// <summary>Trainable share of all parameters, in percent.</summary>
    public double TrainablePercent => 100.0 * TrainableParameterCount / Math.Max(1, TotalParameterCount);

    /// <summary>The PEFT method's options (a copy).</summary>
    public PeftMethodConfig Method => _method.Clone();

    /// <summary>The base model's name and SHA-256.</summary>
    public (string Name, string Sha256) BaseModelIdentity => (_saved.Base.Name, _saved.Base.Sha256);

    /// <summary>What training did; null for a transformer loaded from a file.</summary>
    public TrainingReport? TrainingReport { get; }

    /// <summary>True when the method's update is folded into the base weights for scoring.</summary>
    public bool IsMerged => _saved.Merged;

    /// <summary>The tensor type the model scores in on this machine (bf16 or float32).</summary>
    public string ScoringPrecision => ActiveScoringEngine == ScoringEngine.OnnxRuntime
        ? ScalarType.Float32.ToString()
        : TorchModel.classifier.weight!.dtype.ToString();

    /// <summary>The task this stage was trained for.</summary>
    public PeftTask Task => _saved.Task;

    /// <summary>
    /// What the stage does with texts longer than its window (<see cref="PeftTextOptions.LongTextStrategy"/>), as
    /// trained and saved; Truncate for models saved before the option existed.
    /// </summary>
    public LongTextStrategy LongTextStrategy => _encoder.LongText.Strategy;

    /// <summary>
    /// The model this stage scores with: the trained encoder (<see cref="PeftModel.Encoder"/>, Hugging Face module
    /// names) with the method attached (merged into the weights when <see cref="IsMerged"/>) and the task head. It is
    /// the live module, in eval mode with every weight frozen: use it to run the encoder yourself (embeddings, other
    /// heads), not to change it, since the stage keeps scoring with it.
    /// </summary>
    public PeftModel Model => TorchModel;

    /// <summary>
    /// Float32 copies of every weight of the merged model under the names of a plain Hugging Face
    /// <c>BertForSequenceClassification</c> (<c>bert.encoder.layer.0.attention.self.query.weight</c>, ...,
    /// <c>classifier.weight</c>): the base graph's shape with the method folded in, as <c>peft</c>'s
    /// <c>merge_and_unload</c> gives. Values are the scoring precision's (bf16-rounded when the stage scores in bf16).
    /// The caller owns the tensors.
    /// </summary>
    /// <exception cref="NotSupportedException">The stage's method adds computation the base graph lacks and is not
    /// merged: adapters, prefixes, prompts, QLoRA's 4-bit base, or a mergeable method trained with
    /// <see cref="PeftTextOptions.MergeForScoring"/> off. Methods that train the plain weights themselves (full
    /// fine-tuning, BitFit, LayerNorm tuning, Child-Tuning, linear probe) need no merging.</exception>
    public Dictionary<string, Tensor> GetMergedWeights()
    {
        using var _ = no_grad();
        // The names a plain encoder of this configuration has, with the head's: method modules fall outside them.
        var wanted = new HashSet<string>(StringComparer.Ordinal);
        var model = TorchModel;
        using (var bare = new BertModel(model.Encoder.Config, model.Encoder.HasPooler))
            foreach (var name in bare.state_dict().Keys) wanted.Add("bert." + name);
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var extra = new List<string>();
        foreach (var (name, tensor) in model.state_dict())
        {
            string plain = name.Replace(".base_layer.", ".", StringComparison.Ordinal);
            if (wanted.Contains(plain) || PeftModel.IsHeadParameter(plain))
                result[plain] = tensor.detach().cpu().to(ScalarType.Float32).clone();
            else extra.Add(name);
        }
        // Unmerged method tensors would still change what the plain weights compute.
        string? problem = !IsMerged && extra.Count > 0
            ? $"This stage's {_method.MethodName} weights (e.g. '{extra[0]}') are not merged into the base (the "
                + "method cannot merge, or MergeForScoring was off), so it has no plain-encoder form. Use Model to "
                + "run it as it is."
            : wanted.FirstOrDefault(n => !result.ContainsKey(n)) is { } missing
                ? $"The merged model lacks weight(s) of the plain encoder, e.g. '{missing}': this method's merged "
                    + "form is not a plain encoder."
                : null;
        if (problem is not null)
        {
            foreach (var t in result.Values) t.Dispose();
            throw new NotSupportedException(problem);
        }
        return result;
    }
    internal TextTokenizer Tokenizer => _tokenizer;

    private protected override PeftModelSignature ModelSignature => Signature;

    // Inference under no_grad on a module that is no longer modified is safe from several threads.
    private protected override bool CanScoreConcurrently => true;

    private protected override void CheckInputColumn(int inputIndex, DataViewSchema.Column column) =>
        CheckTextColumn(column);

    /// <summary>The input check of every stage that reads text (this one, and ensembles of it).</summary>
    internal static void CheckTextColumn(DataViewSchema.Column column)
    {
        if (column.Type is not TextDataViewType)
            throw new ArgumentOutOfRangeException(nameof(column),
                $"Input column '{column.Name}' must be Text (string), but is {column.Type}.");
    }

    private protected override IReadOnlyList<PeftOutputColumn> GetOutputColumns(DataViewSchema inputSchema)
    {
        if (_saved.Task == PeftTask.Regression)
            return [new PeftOutputColumn(_saved.ScoreColumn, NumberDataViewType.Single,
                ScoreKind(AnnotationUtils.Const.ScoreColumnKind.Regression, "Score"))];
        var labels = _saved.Labels!;
        var predicted = new DataViewSchema.Annotations.Builder();
        labels.AddKeyValues(predicted);
        AddScoreKind(predicted, AnnotationUtils.Const.ScoreColumnKind.MulticlassClassification, "PredictedLabel");
        return
        [
            new PeftOutputColumn(_saved.ScoreColumn, new VectorDataViewType(NumberDataViewType.Single, labels.Count),
                PeftAnnotations.MulticlassScore(labels.Values)),
            new PeftOutputColumn(_saved.PredictedLabelColumn!, new KeyDataViewType(typeof(uint), labels.Count),
                predicted.ToAnnotations()),
        ];
    }

    private static DataViewSchema.Annotations ScoreKind(string columnKind, string valueKind)
    {
        var b = new DataViewSchema.Annotations.Builder();
        AddScoreKind(b, columnKind, valueKind);
        return b.ToAnnotations();
    }

    private static void AddScoreKind(DataViewSchema.Annotations.Builder b, string columnKind, string valueKind)
    {
        b.Add(AnnotationUtils.Kinds.ScoreColumnKind, TextDataViewType.Instance,
            (ref ReadOnlyMemory<char> v) => v = columnKind.AsMemory());
        b.Add(AnnotationUtils.Kinds.ScoreValueKind, TextDataViewType.Instance,
            (ref ReadOnlyMemory<char> v) => v = valueKind.AsMemory());
    }

    private protected override void ScoreBatch(PeftBatch batch) =>
        WriteOutputs(batch, Predict(batch), _saved.Task, _saved.NumOutputs);

    internal PeftSavedModel Saved => _saved;

    internal IReadOnlyList<PeftOutputColumn> OutputColumns(DataViewSchema inputSchema) => GetOutputColumns(inputSchema);

    /// <summary>
    /// One output row per batch row: class probabilities (classification) or the score in label units (regression, one
    /// value).
    /// </summary>
    internal float[][] Predict(PeftBatch batch) => Predict(Encode(batch));

    /// <summary>
    /// What decides <see cref="Encode"/>'s token ids: stages with equal keys encode a row alike (the tokenizer comes
    /// from the base).
    /// </summary>
    internal (string BaseSha256, TextTokenizerKind Tokenizer, int MaxLength, LongTextSettings LongText) EncodingKey =>
        (_saved.Base.Sha256, _saved.TokenizerKind, _saved.MaxSequenceLength, _encoder.LongText);

    /// <summary>The token ids of the batch's rows.</summary>
    internal TokenizedText[] Encode(PeftBatch batch)
    {
        var first = batch.GetInput<ReadOnlyMemory<char>>(0);
        var second = _encoder.IsPair ? batch.GetInput<ReadOnlyMemory<char>>(1) : default;
        var rows = new TokenizedText[batch.Count];
        for (int i = 0; i < rows.Length; i++)
            rows[i] = _encoder.Encode(first[i].ToString(), _encoder.IsPair ? second[i].ToString() : null);
        return rows;
    }

    /// <summary><see cref="Predict(PeftBatch)"/> on rows <see cref="Encode"/> made.</summary>
    internal float[][] Predict(TokenizedText[] rows) => HeadOutputs.ToScores(Scorer.Score(rows), _saved.Task, _labels);

    /// <summary>
    /// Fills the batch's Score (and PredictedLabel: the most probable class) from <see cref="Predict(PeftBatch)"/>'s
    /// rows.
    /// </summary>
    internal static void WriteOutputs(PeftBatch batch, float[][] outputs, PeftTask task, int classes)
    {
        int rows = batch.Count;
        if (task == PeftTask.Regression)
        {
            var score = batch.GetOutput<float>(0);
            for (int i = 0; i < rows; i++) score[i] = outputs[i][0];
            return;
        }
        if (batch.IsOutputActive(0))
        {
            var scores = batch.GetOutput<VBuffer<float>>(0);
            for (int i = 0; i < rows; i++)
            {
                var editor = VBufferEditor.Create(ref scores[i], classes);
                outputs[i].CopyTo(editor.Values);
                scores[i] = editor.Commit();
            }
        }
        if (batch.IsOutputActive(1))
        {
            var predicted = batch.GetOutput<uint>(1);
            for (int i = 0; i < rows; i++) predicted[i] = (uint)HeadOutputs.ArgMax(outputs[i]) + 1;
        }
    }

    private protected override void SaveContents(PeftModelWriter writer)
    {
        writer.WriteOptions(_saved);
        writer.WriteStream(TrainedStream, w => WriteTensors(w, _trained));
        var files = _tokenizer.ExportFiles();
        foreach (var name in _saved.TokenizerFiles)
            writer.WriteStream(TokenizerStreamPrefix + name, w => w.Write(files[name]));
        if (_saved.Base.WeightsStored)
        {
            var weights = _base.LoadFloatWeights();
            writer.WriteStream(BaseStream, w => WriteTensors(w, weights));
        }
    }

    /// <summary>The tensors a save writes (float32 copies of what trained), by full parameter name.</summary>
    internal IReadOnlyDictionary<string, FloatTensor> TrainedTensors() => _trained;

    // Tensors are stored in float32 whatever the scoring precision, so a zip loads in either precision.

    private static void WriteTensors(BinaryWriter w, IEnumerable<KeyValuePair<string, FloatTensor>> tensors)
    {
        w.Flush();
        SafeTensors.Write(w.BaseStream, tensors);
    }

    private static Dictionary<string, FloatTensor> ReadTensors(PeftModelReader reader, string stream)
    {
        Dictionary<string, FloatTensor>? result = null;
        reader.ReadStream(stream,
            r => result = SafeTensors.ReadFloats(r.BaseStream, stream, SafeTensors.HashCheck.WhenRecorded));
        return result!;
    }

    // Found by ML.NET through the LoadableClass attribute above.
    // Loads no libtorch itself: the libtorch model is built when the chosen engine (or a caller) first needs it.
    private static PeftTextTransformer Create(IHostEnvironment env, ModelLoadContext ctx)
    {
        var reader = ReadModel(env, ctx, Signature);
        var saved = reader.ReadOptions<PeftSavedModel>();
        var method = PeftSavedModelChecks.Validate(saved, reader.EntryName);
        var baseModel = BaseModelResolver.Resolve(reader, saved.Base);
        var files = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        foreach (var name in saved.TokenizerFiles)
            reader.ReadStream(TokenizerStreamPrefix + name, r => files[name] = ReadAll(r));
        var tokenizer = TextTokenizer.Load(files, saved.TokenizerKind);
        var trained = ReadTensors(reader, TrainedStream);
        return new PeftTextTransformer(env, reader.InputColumnNames.ToArray(), saved, method, null, tokenizer,
            baseModel, null, reader.BatchSize, null, trained);
    }

    private static byte[] ReadAll(BinaryReader r)
    {
        using var m = new MemoryStream();
        r.BaseStream.CopyTo(m);
        return m.ToArray();
    }

    /// <summary>Releases the model's tensors.</summary>
    public void Dispose()
    {
        _onnxScorer?.Dispose();
        _model?.Dispose();
    }
}
