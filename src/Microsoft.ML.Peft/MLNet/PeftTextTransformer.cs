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
public sealed class PeftTextTransformer : PeftTransformerBase, IDisposable
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
        _encoder = new RowEncoder(tokenizer, saved.MaxSequenceLength, pair: inputColumns.Length > 1);
        _labels = new LabelScaler(saved.LabelShift, saved.LabelScale);
        if (saved.ScoringEngine == ScoringEngine.OnnxRuntime) _scorer = ChooseScorer();
    }

    private IScorer Scorer
    {
        get
        {
            lock (_engineGate) return _scorer ??= ChooseScorer();
        }
    }

    /// <summary>The libtorch model, built from the base and the trained tensors the first time it is needed.</summary>
    private PeftModel TorchModel
    {
        get
        {
            lock (_torchGate) return _model ??= BuildTorchModel();
        }
    }

    private TorchScorer TorchEngine
    {
        get
        {
            lock (_torchGate)
                return _torchScorer ??= new TorchScorer(TorchModel, BatchSize, _saved.TokenBudget,
                    _tokenizer.PadTokenId, _device!, _saved.NumberOfThreads);
        }
    }

    private PeftModel BuildTorchModel()
    {
        Runtime.TorchRuntime.EnsureLoaded();
        _device ??= PeftDevice.Resolve(_env);
        var encoder = _base.CreateEncoder(withPooler: _saved.Pooling == Pooling.Pooler);
        var model = PeftModel.CreateForInference(encoder, _method, _saved.NumOutputs, _saved.Pooling,
            _saved.HeadDropout, _saved.PairEncoding);
        var trained = TorchWeights.ToTorch(_trained);
        try { model.LoadTrainedTensors(trained); }
        finally { foreach (var t in trained.Values) t.Dispose(); }
        if (_saved.Merged) model.Merge();
        model.to(_device);
        model.CastTo(PrecisionPolicy.Resolve(_saved.Precision, _device));
        model.Freeze();
        return model;
    }

    /// <summary>
    /// The runtime this stage scores with (<see cref="MLNet.ScoringEngine.Auto"/> by default). Setting it switches
    /// engines at once (building the ONNX graph when needed) and is saved with the model.
    /// </summary>
    /// <exception cref="InvalidOperationException">OnnxRuntime was asked for, ONNX Runtime cannot load and
    /// <see cref="FallbackToTorchSharp"/> is off.</exception>
    public ScoringEngine ScoringEngine
    {
        get => _saved.ScoringEngine;
        set
        {
            if (!Enum.IsDefined(value))
                throw new ArgumentOutOfRangeException(nameof(ScoringEngine), $"Unknown ScoringEngine {value}.");
            var previous = _saved.ScoringEngine;
            _saved.ScoringEngine = value;
            try { lock (_engineGate) _scorer = ChooseScorer(); }
            catch { _saved.ScoringEngine = previous; throw; }
        }
    }

    /// <summary>
    /// Score with TorchSharp (logging a warning) when <see cref="ScoringEngine"/> is OnnxRuntime and ONNX Runtime
    /// cannot load, instead of failing. Saved with the model. Default false.
    /// </summary>
    public bool FallbackToTorchSharp
    {
        get => _saved.FallbackToTorchSharp;
        set => _saved.FallbackToTorchSharp = value;
    }

    /// <summary>The engine scoring now: <see cref="ScoringEngine"/> with Auto and any fallback resolved.</summary>
    public ScoringEngine ActiveScoringEngine => Scorer is OnnxScorer ? ScoringEngine.OnnxRuntime
        : ScoringEngine.TorchSharp;

    private OnnxScorer NewOnnxScorer()
    {
        byte[] graph = BuildOnnxModel(rawOutput: true).ToByteArray();
        // The managed weights the graph was built from (a base's worth, twice with the transposed matrices) are
        // garbage now; collect them before ONNX Runtime makes its own copies, so the peak holds one set, not two.
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
        return new OnnxScorer(graph, StageGraph.RawOutput, BatchSize, _saved.TokenBudget, _tokenizer.PadTokenId,
            _saved.NumberOfThreads);
    }

    // Whether the libtorch engine would score in bf16 here, decided without loading libtorch when it is not loaded.
    private bool ScoresInBf16() => _model is not null
        ? _model.classifier.weight!.dtype == ScalarType.BFloat16
        : PrecisionPolicy.ResolvesToBFloat16(_saved.Precision, gpuRequested:
            (_env as IHostEnvironmentInternal)?.GpuDeviceId is not null);

    private IScorer ChooseScorer()
    {
        bool auto = _saved.ScoringEngine == ScoringEngine.Auto;
        var wanted = auto ? EngineChoice.Choose(ScoresInBf16()) : _saved.ScoringEngine;
        if (wanted == ScoringEngine.TorchSharp) return TorchEngine;
        try
        {
            return _onnxScorer ??= NewOnnxScorer();
        }
        catch (Exception e) when (auto && e is NotSupportedException)
        {
            using var ch = Host.Start("Scoring engine");
            ch.Info($"Auto engine: TorchSharp, since this stage cannot run on ONNX Runtime ({e.Message}).");
            return TorchEngine;
        }
        catch (Exception e) when (EngineChoice.IsRuntimeMissing(e))
        {
            if (_saved.ScoringEngine == ScoringEngine.OnnxRuntime && !_saved.FallbackToTorchSharp)
                throw new InvalidOperationException(
                    $"ScoringEngine OnnxRuntime: ONNX Runtime's native library cannot load ({e.Message}). Install it, "
                    + "or set FallbackToTorchSharp to score with TorchSharp instead.", e);
            using var ch = Host.Start("Scoring engine");
            ch.Warning($"ONNX Runtime cannot load ({e.Message}); scoring with TorchSharp.");
            return TorchEngine;
        }
    }

    /// <summary>
    /// Writes this stage as one self-contained ONNX model (opset 17) to <paramref name="path"/>: encoder, method
    /// (merged where it merges, as extra nodes where it cannot), pooling and head. Inputs <c>input_ids</c>,
    /// <c>attention_mask</c>, <c>token_type_ids</c> (int64 [batch, sequence]); outputs the Score column (class
    /// probabilities [batch, classes], or the score in label units [batch, 1]) and, for classification, the predicted
    /// class index [batch] (0-based into the label's key values), named as the stage's columns. The tokenizer's files,
    /// the labels and the stage's settings are in the model's metadata (<c>peft.*</c> keys). The file is written
    /// atomically: complete under its name, or not at all.
    /// </summary>
    /// <exception cref="IOException">The path cannot be written; the message names it.</exception>
    /// <exception cref="NotSupportedException">The method cannot be expressed as ONNX nodes; the message names it.
    /// </exception>
    public void ExportOnnx(string path) => ExportOnnx(path, new OnnxExportOptions());

    /// <summary><see cref="ExportOnnx(string)"/> with <paramref name="options"/> (e.g. int8 weights).</summary>
    public void ExportOnnx(string path, OnnxExportOptions options) =>
        OnnxFile.Write(BuildOnnxModel(options: options), path);

    /// <summary>Writes the ONNX model <see cref="ExportOnnx(string)"/> describes to <paramref name="stream"/>.
    /// </summary>
    public void ExportOnnx(Stream stream) => ExportOnnx(stream, new OnnxExportOptions());

    /// <summary><see cref="ExportOnnx(Stream)"/> with <paramref name="options"/> (e.g. int8 weights).</summary>
    public void ExportOnnx(Stream stream, OnnxExportOptions options) =>
        OnnxFile.Write(BuildOnnxModel(options: options), stream);

    /// <summary>
    /// The stage's ONNX model, built from the base weights and the saved (float32) trained tensors, never from the
    /// scoring copy, so a bf16 stage exports its float32 weights.
    /// </summary>
    internal global::Onnx.ModelProto BuildOnnxModel(bool rawOutput = false, OnnxExportOptions? options = null) =>
        StageGraph.Build(Spec(options), NewExportWeights(), _method.CreateOnnxExport(), OnnxMetadata(),
            _method.MethodName, rawOutput);

    /// <summary>Emits this stage's nodes into <paramref name="b"/> on the given inputs (ensembles).</summary>
    internal (string Head, string Score, string? Predicted) EmitOnnx(OnnxGraphBuilder b, string ids, string mask,
        string types, OnnxExportOptions? options) =>
        StageGraph.Emit(b, Spec(options), NewExportWeights(), _method.CreateOnnxExport(), _method.MethodName, ids,
            mask, types);

    private StageGraphSpec Spec(OnnxExportOptions? options) =>
        GraphSpec with { QuantizeInt8 = options?.QuantizeInt8 ?? false };

    private ExportWeights NewExportWeights()
    {
        var plain = _base.LoadFloatWeights(includePooler: _saved.Pooling == Pooling.Pooler)
            .ToDictionary(kv => "bert." + kv.Key, kv => kv.Value, StringComparer.Ordinal);
        // Copies: a method's merge may change what it is given, and the stage keeps its tensors.
        var trained = _trained.ToDictionary(kv => kv.Key, kv => kv.Value.Clone(), StringComparer.Ordinal);
        return new ExportWeights(plain, trained);
    }

    internal StageGraphSpec GraphSpec => new(_base.Config, _saved.Pooling, _saved.PairEncoding, _saved.Task,
        _saved.NumOutputs, _saved.LabelShift, _saved.LabelScale, _saved.ScoreColumn, _saved.PredictedLabelColumn);

    // What a scorer of the exported file needs besides the graph: the tokenizer exactly as trained, the labels.
    internal IEnumerable<KeyValuePair<string, string>> OnnxMetadata()
    {
        yield return new("peft.method", _method.MethodName);
        yield return new("peft.task", _saved.Task.ToString());
        yield return new("peft.base_model", _saved.Base.Name);
        yield return new("peft.base_model_sha256", _saved.Base.Sha256);
        yield return new("peft.max_sequence_length", _saved.MaxSequenceLength.ToString(
            System.Globalization.CultureInfo.InvariantCulture));
        yield return new("peft.tokenizer.kind", _saved.TokenizerKind.ToString());
        if (_saved.Labels is { } labels)
            yield return new("peft.labels", System.Text.Json.JsonSerializer.Serialize(labels.Values));
        foreach (var (name, bytes) in _tokenizer.ExportFiles())
            yield return new("peft.tokenizer.file." + name, Convert.ToBase64String(bytes));
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
    /// <exception cref="NotSupportedException">The stage is not merged: its method adds computation the base graph
    /// lacks (adapters, prefixes, prompts, QLoRA's 4-bit base), or it was trained with
    /// <see cref="PeftTextOptions.MergeForScoring"/> off.</exception>
    public Dictionary<string, Tensor> GetMergedWeights()
    {
        if (!IsMerged)
            throw new NotSupportedException(
                $"This stage's {_method.MethodName} weights are not merged into the base "
                + "(the method cannot merge, or MergeForScoring was off), so it has no plain-encoder form. "
                + "Use Model to "
                + "run it as it is.");
        using var _ = no_grad();
        // The names a plain encoder of this configuration has, with the head's: method modules fall outside them.
        var wanted = new HashSet<string>(StringComparer.Ordinal);
        var model = TorchModel;
        using (var bare = new BertModel(model.Encoder.Config, model.Encoder.HasPooler))
            foreach (var name in bare.state_dict().Keys) wanted.Add("bert." + name);
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (name, tensor) in model.state_dict())
        {
            string plain = name.Replace(".base_layer.", ".", StringComparison.Ordinal);
            if (wanted.Contains(plain) || PeftModel.IsHeadParameter(plain))
                result[plain] = tensor.detach().cpu().to(ScalarType.Float32).clone();
        }
        var missing = wanted.Where(n => !result.ContainsKey(n)).ToList();
        if (missing.Count > 0)
        {
            foreach (var t in result.Values) t.Dispose();
            throw new NotSupportedException(
                $"The merged model lacks {missing.Count} weight(s) of the plain encoder, e.g. " +
                $"'{missing[0]}': this method's merged form is not a plain encoder.");
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
    internal (string BaseSha256, TextTokenizerKind Tokenizer, int MaxLength) EncodingKey =>
        (_saved.Base.Sha256, _saved.TokenizerKind, _saved.MaxSequenceLength);

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
