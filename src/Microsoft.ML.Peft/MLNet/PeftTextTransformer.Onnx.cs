using Microsoft.ML.Peft.Inference;
using Microsoft.ML.Peft.Modeling;
using Microsoft.ML.Peft.Onnx;

namespace Microsoft.ML.Peft.MLNet;

// ONNX export: the stage's graph from the base's and the saved trained tensors (managed, never libtorch), for a file,
// a stream, an ensemble or the ONNX Runtime engine.
public sealed partial class PeftTextTransformer
{
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

    /// <summary>The graph's shape for <paramref name="options"/>; refuses an in-graph tokenizer for pairs.</summary>
    internal StageGraphSpec Spec(OnnxExportOptions? options)
    {
        if (options?.IncludeTokenizer == true && InputColumnNames.Count > 1)
            throw new NotSupportedException("IncludeTokenizer supports single-text stages; this one reads sentence " +
                "pairs. Export without it and tokenize with the files in the model's metadata.");
        // The in-graph tokenizer truncates; a graph that cut long texts otherwise than the stage would score them
        // differently without saying so.
        if (options?.IncludeTokenizer == true && LongTextStrategy != LongTextStrategy.Truncate)
            throw new NotSupportedException($"IncludeTokenizer truncates long texts, but this stage uses " +
                $"LongTextStrategy {LongTextStrategy}. Export without it, cut texts into windows as the " +
                "peft.long_text.* metadata says and pool the windows' scores yourself (docs/long-texts.md).");
        return GraphSpec with
        {
            QuantizeInt8 = options?.QuantizeInt8 ?? false,
            Tokenizer = options?.IncludeTokenizer == true ? _tokenizer : null,
            MaxSequenceLength = _saved.MaxSequenceLength,
        };
    }

    private ExportWeights NewExportWeights()
    {
        var plain = _base.LoadFloatWeights(includePooler: _saved.Pooling == Pooling.Pooler)
            .ToDictionary(kv => "bert." + kv.Key, kv => kv.Value, StringComparer.Ordinal);
        // Copies: a method's merge may change what it is given, and the stage keeps its tensors.
        var trained = _trained.ToDictionary(kv => kv.Key, kv => kv.Value.Clone(), StringComparer.Ordinal);
        return new ExportWeights(plain, trained);
    }

    internal StageGraphSpec GraphSpec => new(_base.Config, _saved.Pooling, _saved.PairEncoding, _saved.Task,
        _saved.NumOutputs, _saved.LabelShift, _saved.LabelScale, _saved.ScoreColumn, _saved.PredictedLabelColumn)
    {
        HeadLayer = _saved.HeadLayer,
    };

    // The graph scores one window: a caller with long texts must cut and pool as the stage does, so the strategy and
    // its options, defaults resolved where they do not depend on the row, travel with it.
    private static IEnumerable<KeyValuePair<string, string>> LongTextMetadata(LongTextSettings s)
    {
        static string Text(int value) => value.ToString(System.Globalization.CultureInfo.InvariantCulture);
        yield return new("peft.long_text.strategy", s.Strategy.ToString());
        if (s.Strategy == LongTextStrategy.HeadAndTail)
            yield return new("peft.long_text.head_tokens", s.HeadTokens is { } h ? Text(h) : "auto (room * 128 / 510)");
        if (s.Strategy != LongTextStrategy.SlidingWindow) yield break;
        yield return new("peft.long_text.window_stride", s.WindowStride is { } w ? Text(w) : "auto (room / 2)");
        yield return new("peft.long_text.window_pooling", s.Pooling.ToString());
        yield return new("peft.long_text.max_windows_per_document", Text(s.MaxWindowsPerDocument));
    }

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
        foreach (var entry in LongTextMetadata(_encoder.LongText)) yield return entry;
        if (_saved.Labels is { } labels)
            yield return new("peft.labels", System.Text.Json.JsonSerializer.Serialize(labels.Values));
        foreach (var (name, bytes) in _tokenizer.ExportFiles())
            yield return new("peft.tokenizer.file." + name, Convert.ToBase64String(bytes));
    }
}
