namespace Microsoft.ML.Peft.MLNet;

/// <summary>Options of <see cref="PeftTextTransformer.ExportOnnx(string, OnnxExportOptions)"/>.</summary>
public sealed record OnnxExportOptions
{
    /// <summary>
    /// Dynamic int8 quantisation of the encoder's matrix weights: weights stored as int8 with one scale per output
    /// channel, activations quantised per batch (<c>DynamicQuantizeLinear</c> + <c>MatMulInteger</c>), as ONNX
    /// Runtime's dynamic quantisation does. A quarter of the weight bytes and faster matrix products on CPUs with
    /// int8 dot products; scores move slightly (measured accuracy in <c>docs/onnx.md</c>). Embeddings, LayerNorms,
    /// the head and the method's own small matrices stay float32. Default false.
    /// </summary>
    public bool QuantizeInt8 { get; init; }

    /// <summary>
    /// Tokenize inside the graph: the model takes raw text (<c>text</c>, string [batch]) instead of token ids, through
    /// ONNX Runtime Extensions' <c>BertTokenizer</c>, whose ids equal the stage's WordPiece tokenizer's on the corpora
    /// measured (docs/onnx.md). Sessions must register the extensions (<c>SessionOptions.RegisterOrtExtensions()</c>,
    /// package Microsoft.ML.OnnxRuntime.Extensions). Single-text stages with a WordPiece tokenizer only. Default false.
    /// </summary>
    public bool IncludeTokenizer { get; init; }
}
