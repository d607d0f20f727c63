using Microsoft.ML.Peft.Modeling;
using Microsoft.ML.Peft.Training;
using Onnx;

namespace Microsoft.ML.Peft.Onnx;

/// <summary>What shapes a stage's graph besides its weights: the encoder, pooling, pairs, the task and its outputs.
/// </summary>
internal sealed record StageGraphSpec(EncoderConfig Config, Pooling Pooling, PairEncoding PairEncoding, PeftTask Task,
    int NumOutputs, double LabelShift, double LabelScale, string ScoreColumn, string? PredictedLabelColumn)
{
    /// <summary>Whether the encoder's layer matrices are written as dynamic int8 (see
    /// <see cref="MLNet.OnnxExportOptions.QuantizeInt8"/>).</summary>
    public bool QuantizeInt8 { get; init; }

    /// <summary>The tokenizer to put inside the graph (<see cref="MLNet.OnnxExportOptions.IncludeTokenizer"/>), or null
    /// for token inputs.</summary>
    public Tokenization.TextTokenizer? Tokenizer { get; init; }

    /// <summary>Longest row the in-graph tokenizer keeps.</summary>
    public int MaxSequenceLength { get; init; }

    /// <summary>The head's hidden layer (RoBERTa's or DistilBERT's head), <see cref="HeadLayer.None"/> for BERT's.
    /// </summary>
    public HeadLayer HeadLayer { get; init; }
}

/// <summary>
/// One trained stage as ONNX nodes: encoder + method (<see cref="EncoderGraph"/>), pooling, the head, then softmax
/// (classification: <c>Score</c> [batch, classes] and the predicted class index [batch]) or the score in label units
/// (regression: <c>Score</c> [batch, 1]), as <c>PeftModel.forward</c> and <c>HeadOutputs</c> compute them.
/// </summary>
internal static class StageGraph
{
    /// <summary>The graph's token inputs, as Hugging Face tokenizers name them.</summary>
    public const string InputIds = "input_ids", AttentionMask = "attention_mask", TokenTypeIds = "token_type_ids";

    /// <summary>The output a scoring engine reads: the head's raw outputs (logits, or the standardised value).
    /// </summary>
    public const string RawOutput = "head_outputs";

    /// <summary>
    /// Builds a stand-alone model for one stage. <paramref name="rawOutput"/> gives the one output
    /// <see cref="RawOutput"/> [batch, outputs] instead of the stage's columns (what the in-process engine reads).
    /// </summary>
    public static ModelProto Build(StageGraphSpec spec, ExportWeights weights, OnnxMethodExport method,
        IEnumerable<KeyValuePair<string, string>> metadata, string methodName, bool rawOutput = false)
    {
        var b = new OnnxGraphBuilder();
        var (ids, mask, types) = Inputs(b, spec);
        var (head, score, predicted) = Emit(b, spec, weights, method, methodName, ids, mask, types);
        if (rawOutput) b.AddOutput(head, RawOutput, TensorProto.Types.DataType.Float, "batch", spec.NumOutputs);
        else AddOutputs(b, spec, score, predicted);
        return b.ToModel(metadata);
    }

    /// <summary>The token inputs, or the text input and the nodes that tokenize it
    /// (<see cref="StageGraphSpec.Tokenizer"/>).</summary>
    public static (string Ids, string Mask, string Types) Inputs(OnnxGraphBuilder b, StageGraphSpec spec) =>
        spec.Tokenizer is { } tokenizer
            ? TokenizerGraph.Emit(b, tokenizer, spec.MaxSequenceLength)
            : (b.AddTokenInput(InputIds), b.AddTokenInput(AttentionMask), b.AddTokenInput(TokenTypeIds));

    /// <summary>Declares the stage's outputs (also used by ensembles, which average before this).</summary>
    public static void AddOutputs(OnnxGraphBuilder b, StageGraphSpec spec, string score, string? predicted)
    {
        if (spec.Task == PeftTask.Regression)
        {
            b.AddOutput(score, spec.ScoreColumn, TensorProto.Types.DataType.Float, "batch", 1);
            return;
        }
        b.AddOutput(score, spec.ScoreColumn, TensorProto.Types.DataType.Float, "batch", spec.NumOutputs);
        b.AddOutput(predicted!, spec.PredictedLabelColumn ?? "PredictedLabel", TensorProto.Types.DataType.Int64,
            "batch");
    }

    /// <summary>
    /// Emits the stage's nodes on the given inputs; returns the head's raw outputs, the Score value (probabilities or
    /// label units) and, for classification, the predicted class index. Fails, naming them, if the method left
    /// trained tensors unused.
    /// </summary>
    public static (string Head, string Score, string? Predicted) Emit(OnnxGraphBuilder b, StageGraphSpec spec,
        ExportWeights weights, OnnxMethodExport method, string methodName, string ids, string mask, string types)
    {
        method.Merge(weights);
        var encoder = new EncoderGraph(b, spec.Config, weights, method) { QuantizeInt8 = spec.QuantizeInt8 };
        var pooled = spec.PairEncoding == PairEncoding.BiEncoder
            ? PairFeatures(b, encoder, spec, ids, mask, types)
            : Encode(b, encoder, spec, ids, mask, types);
        if (spec.HeadLayer != HeadLayer.None)
        {
            // PeftModel.forward: dense, then tanh (RoBERTa) or ReLU (DistilBERT); dropout is off when scoring.
            b.Scope = "pre_classifier";
            var dense = b.Node("MatMul", [pooled, b.Initializer("pre_classifier.weight.T",
                weights.Take("pre_classifier.weight").Transpose())]);
            dense = b.Node("Add", [dense, b.Initializer("pre_classifier.bias", weights.Take("pre_classifier.bias"))]);
            pooled = b.Node(spec.HeadLayer == HeadLayer.DenseTanh ? "Tanh" : "Relu", [dense]);
        }
        b.Scope = "classifier";
        var head = b.Node("MatMul", [pooled, b.Initializer("classifier.weight.T",
            weights.Take("classifier.weight").Transpose())]);
        head = b.Node("Add", [head, b.Initializer("classifier.bias", weights.Take("classifier.bias"))]);
        var untaken = weights.Untaken;
        if (untaken.Count > 0)
            throw new NotSupportedException(
                $"Exporting the '{methodName}' method to ONNX would drop {untaken.Count} trained tensor(s) its " +
                $"export does not use, e.g. '{untaken[0]}'.");
        if (spec.Task == PeftTask.Regression)
        {
            var scaled = b.Node("Mul", [head, b.Scalar((float)spec.LabelScale)]);
            return (head, b.Node("Add", [scaled, b.Scalar((float)spec.LabelShift)]), null);
        }
        var probabilities = b.Node("Softmax", [head], [("axis", -1L)]);
        return (head, probabilities, PredictedClass(b, head));
    }

    /// <summary>The index of the largest value per row, the first on ties (as <c>HeadOutputs.ArgMax</c>).</summary>
    public static string PredictedClass(OnnxGraphBuilder b, string scores) =>
        b.Node("ArgMax", [scores], [("axis", 1L), ("keepdims", 0L), ("select_last_index", 0L)]);

    // PeftModel.Encode: encoder, virtual prompt positions dropped (unless peft's layout pools them), pooled.
    private static string Encode(OnnxGraphBuilder b, EncoderGraph encoder, StageGraphSpec spec, string ids,
        string mask, string types)
    {
        var (hidden, fullMask) = encoder.Emit(ids, mask, types);
        int prompt = encoder.Method.PromptLength;
        b.Scope = "pooling";
        if (prompt > 0 && !encoder.Method.PromptThroughEmbeddings)
        {
            hidden = b.Node("Slice", [hidden, b.Int64s(prompt), b.Int64s(long.MaxValue), b.Int64s(1)]);
            fullMask = b.Node("Slice", [fullMask, b.Int64s(prompt), b.Int64s(long.MaxValue), b.Int64s(1)]);
        }
        switch (spec.Pooling)
        {
            case Pooling.Cls:
                return b.Node("Gather", [hidden, b.Int64Scalar(0)], [("axis", 1L)]);
            case Pooling.Pooler:
                var first = b.Node("Gather", [hidden, b.Int64Scalar(0)], [("axis", 1L)]);
                return b.Node("Tanh", [encoder.PlainLinear("bert.pooler.dense", first)]);
            default:
                // Σ hidden·mask / max(Σ mask, 1e-9), as PeftModel.MeanPool.
                var m = b.Node("Unsqueeze", [fullMask, b.Int64s(-1)]);
                var sum = b.Node("ReduceSum", [b.Node("Mul", [hidden, m]), b.Int64s(1)], [("keepdims", 0L)]);
                var count = b.Node("ReduceSum", [m, b.Int64s(1)], [("keepdims", 0L)]);
                return b.Node("Div", [sum, b.Node("Max", [count, b.Scalar(1e-9f)])]);
        }
    }

    // PeftModel.PairFeatures: [CLS] a [SEP] and [CLS] b [SEP] encoded apart in one batch, then [u, v, |u−v|, u·v].
    // Rows keep their full padded length (PyTorch trims trailing padding; masked positions change nothing).
    private static string PairFeatures(OnnxGraphBuilder b, EncoderGraph encoder, StageGraphSpec spec, string ids,
        string mask, string types)
    {
        b.Scope = "pairs";
        var real = b.Node("Greater", [mask, b.Int64s(0)]);
        var second = b.Node("And", [b.Node("Equal", [types, b.Int64s(1)]), real]);
        var firstMask = b.Node("And", [real, b.Node("Not", [second])]);
        var shape = b.Node("Shape", [ids]);
        var length = b.Node("Gather", [shape, b.Int64s(1)], [("axis", 0L)]);
        var positions = b.Node("Expand", [b.Node("Unsqueeze", [b.Node("Range", [b.Int64Scalar(0),
            b.Node("Squeeze", [length]), b.Int64Scalar(1)]), b.Int64s(0)]), shape]);
        // The second sentence's tokens, in order, behind the first [CLS]: argsort of a key that puts them first.
        var key = b.Node("Where", [second, positions, b.Node("Add", [positions, length])]);
        var order = b.Nodes("TopK", [key, length], 2, [("axis", 1L), ("largest", 0L), ("sorted", 1L)])[1];
        var moved = b.Node("GatherElements", [ids, order], [("axis", 1L)]);
        var lengthLessOne = b.Node("Sub", [length, b.Int64s(1)]);
        var secondIds = b.Node("Concat", [b.Node("Slice", [ids, b.Int64s(0), b.Int64s(1), b.Int64s(1)]),
            b.Node("Slice", [moved, b.Int64s(0), lengthLessOne, b.Int64s(1)])], [("axis", 1L)]);
        var secondLength = b.Node("Add", [b.Node("ReduceSum", [b.Node("Cast", [second], [("to", 7L)]),
            b.Int64s(1)], [("keepdims", 1L)]), b.Int64s(1)]);
        var secondMask = b.Node("Less", [positions, secondLength]);
        var bothIds = b.Node("Concat", [ids, secondIds], [("axis", 0L)]);
        var bothMask = b.Node("Cast", [b.Node("Concat", [firstMask, secondMask], [("axis", 0L)])], [("to", 7L)]);
        var zeroTypes = b.Node("Mul", [bothIds, b.Int64s(0)]);
        var pooled = Encode(b, encoder, spec, bothIds, bothMask, zeroTypes);
        b.Scope = "pairs";
        var rows = b.Node("Gather", [shape, b.Int64s(0)], [("axis", 0L)]);
        var u = b.Node("Slice", [pooled, b.Int64s(0), rows, b.Int64s(0)]);
        var v = b.Node("Slice", [pooled, rows, b.Int64s(long.MaxValue), b.Int64s(0)]);
        var diff = b.Node("Abs", [b.Node("Sub", [u, v])]);
        return b.Node("Concat", [u, v, diff, b.Node("Mul", [u, v])], [("axis", 1L)]);
    }
}
