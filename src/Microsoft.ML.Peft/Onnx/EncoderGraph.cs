using Microsoft.ML.Peft.Modeling;

namespace Microsoft.ML.Peft.Onnx;

/// <summary>
/// Emits a BERT-family encoder (Hugging Face <c>BertModel</c>, RoBERTa positions; DistilBERT arrives under BERT names)
/// as ONNX nodes, op for op as <see cref="BertModel"/> computes it, calling the method's hooks where the TorchSharp
/// model lets a method in. Methods' hooks use the helpers here (<see cref="Linear(string, string)"/>,
/// <see cref="Weight"/>, ...).
/// </summary>
internal sealed class EncoderGraph
{
    private readonly Dictionary<string, string> _initializers = new(StringComparer.Ordinal);

    /// <summary>Prepares an export of <paramref name="config"/>'s encoder from <paramref name="weights"/>.</summary>
    public EncoderGraph(OnnxGraphBuilder builder, EncoderConfig config, ExportWeights weights, OnnxMethodExport method)
    {
        B = builder; Config = config; Weights = weights; Method = method;
    }

    /// <summary>The graph being written.</summary>
    public OnnxGraphBuilder B { get; }

    /// <summary>The encoder's configuration.</summary>
    public EncoderConfig Config { get; }

    /// <summary>The weights being exported.</summary>
    public ExportWeights Weights { get; }

    /// <summary>The method's hooks.</summary>
    public OnnxMethodExport Method { get; }

    /// <summary>
    /// Emits embeddings and every layer for int64 [batch, seq] inputs; returns the last hidden state [batch,
    /// prompt + seq, hidden] and the 1/0 float mask over those positions.
    /// </summary>
    public (string Hidden, string Mask) Emit(string inputIds, string attentionMask, string tokenTypeIds)
    {
        var mask = B.Node("Cast", [attentionMask], [("to", 1L)]);
        string? prompt = null, zeros = null;
        if (Method.PromptLength > 0)
        {
            B.Scope = "prompt";
            prompt = Method.Prompt(this, inputIds);
            // Zeros [batch, prompt]: plus one, the mask that always attends to the virtual tokens; in peft's layout
            // also their token type.
            zeros = B.Node("Squeeze", [B.Node("Slice", [B.Node("Mul", [prompt, B.Scalar(0f)]), B.Int64s(0),
                B.Int64s(1), B.Int64s(2)]), B.Int64s(2)]);
            mask = B.Node("Concat", [B.Node("Add", [zeros, B.Scalar(1f)]), mask], [("axis", 1L)]);
        }
        // As BertModel.forward: peft's layout embeds the prompt with the text; otherwise it goes in front of it.
        bool withText = prompt is not null && Method.PromptThroughEmbeddings;
        B.Scope = "bert.embeddings";
        var hidden = Embeddings(inputIds, tokenTypeIds, withText ? prompt : null, zeros);
        if (prompt is not null && !withText) hidden = B.Node("Concat", [prompt, hidden], [("axis", 1L)]);
        // (1 − mask) · finfo.min as [batch, 1, 1, seq]: what BertModel.AdditiveMask gives in float32.
        var additive = B.Node("Mul", [B.Node("Sub", [B.Scalar(1f), mask]), B.Scalar(float.MinValue)]);
        additive = B.Node("Unsqueeze", [additive, B.Int64s(1, 2)]);
        for (int l = 0; l < Config.NumHiddenLayers; l++) hidden = Layer(l, hidden, additive);
        B.Scope = "";
        return (hidden, mask);
    }

    // The embedded input; a prompt given here joins the word embeddings (peft's layout: it takes positions 0..P−1 and
    // token type 0, from zeros, and the text's positions follow; see BertEmbeddings.Forward).
    private string Embeddings(string inputIds, string tokenTypeIds, string? prompt, string? zeros)
    {
        const string P = "bert.embeddings.";
        var x = B.Node("Gather", [Weight(P + "word_embeddings.weight"), inputIds]);
        long extra = 0;
        if (prompt is not null)
        {
            x = B.Node("Concat", [prompt, x], [("axis", 1L)]);
            tokenTypeIds = B.Node("Concat", [B.Node("Cast", [zeros!], [("to", 7L)]), tokenTypeIds], [("axis", 1L)]);
            extra = Method.PromptLength;
        }
        x = B.Node("Add", [x, B.Node("Gather", [Weight(P + "position_embeddings.weight"),
            PositionIds(inputIds, extra)])]);
        if (Weights.HasPlain(P + "token_type_embeddings.weight"))
            x = B.Node("Add", [x, B.Node("Gather", [Weight(P + "token_type_embeddings.weight"), tokenTypeIds])]);
        return LayerNorm(P + "LayerNorm", x);
    }

    // BERT: offset..offset+extra+seq−1 for every row (offset: the method's PositionOffset; extra: a prompt in the
    // embeddings); RoBERTa: real tokens numbered from pad + 1 + offset, padding at pad (as BertEmbeddings).
    private string PositionIds(string inputIds, long extra)
    {
        long offset = Method.PositionOffset;
        if (Config.Architecture == EncoderArchitecture.Roberta)
        {
            if (extra > 0) throw new NotSupportedException("Prompt positions are defined for BERT encoders only.");
            var pad = B.Int64s(Config.PadTokenId);
            var notPad = B.Node("Cast", [B.Node("Not", [B.Node("Equal", [inputIds, pad])])], [("to", 7L)]);
            var cumsum = B.Node("CumSum", [notPad, B.Int64Scalar(1)]);
            if (offset != 0) cumsum = B.Node("Add", [cumsum, B.Int64s(offset)]);
            return B.Node("Add", [B.Node("Mul", [cumsum, notPad]), pad]);
        }
        var length = B.Node("Squeeze", [B.Node("Gather", [B.Node("Shape", [inputIds]), B.Int64s(1)],
            [("axis", 0L)])]);
        var end = B.Node("Add", [length, B.Int64Scalar(offset + extra)]);
        var range = B.Node("Range", [B.Int64Scalar(offset), end, B.Int64Scalar(1)]);
        return B.Node("Unsqueeze", [range, B.Int64s(0)]);
    }

    private string Layer(int l, string x, string additiveMask)
    {
        string p = $"bert.encoder.layer.{l}.";
        B.Scope = p + "attention";
        var context = SelfAttention(l, p + "attention.self.", x, additiveMask);
        var attended = ResidualOutput(p + "attention.output", context, x);
        B.Scope = p + "intermediate";
        var a = Activation(Linear(p + "intermediate.dense", attended));
        a = Method.ActivationScale(this, p + "intermediate", a) ?? a;
        B.Scope = p + "output";
        return ResidualOutput(p + "output", a, attended);
    }

    private string SelfAttention(int l, string p, string x, string additiveMask)
    {
        int heads = Config.NumAttentionHeads, size = Config.HeadSize;
        var shape = B.Int64s(0, 0, heads, size);
        string Split(string t) =>
            B.Node("Transpose", [B.Node("Reshape", [t, shape])], [("perm", new long[] { 0, 2, 1, 3 })]);
        var q = Split(Linear(p + "query", x));
        var k = Split(Linear(p + "key", x));
        var v = Split(Linear(p + "value", x));
        if (Method.Prefix(this, l, x, additiveMask) is var (pk, pv))
        {
            k = B.Node("Concat", [pk, k], [("axis", 2L)]);
            v = B.Node("Concat", [pv, v], [("axis", 2L)]);
            // Prefix positions are always attended to: zeros [batch, 1, 1, prefix] in front of the mask.
            var zeros = B.Node("Mul", [B.Node("ReduceSum", [pk, B.Int64s(1, 3)], [("keepdims", 1L)]), B.Scalar(0f)]);
            zeros = B.Node("Transpose", [zeros], [("perm", new long[] { 0, 1, 3, 2 })]);
            additiveMask = B.Node("Concat", [zeros, additiveMask], [("axis", 3L)]);
        }
        var kt = B.Node("Transpose", [k], [("perm", new long[] { 0, 1, 3, 2 })]);
        var scores = B.Node("Mul", [B.Node("MatMul", [q, kt]), B.Scalar((float)(1 / Math.Sqrt(size)))]);
        var probs = B.Node("Softmax", [B.Node("Add", [scores, additiveMask])], [("axis", -1L)]);
        var context = B.Node("Transpose", [B.Node("MatMul", [probs, v])], [("perm", new long[] { 0, 2, 1, 3 })]);
        return B.Node("Reshape", [context, B.Int64s(0, 0, Config.HiddenSize)]);
    }

    // LayerNorm(dense(x) [→ adapter] + residual), as BertResidualOutput.
    private string ResidualOutput(string module, string x, string residual)
    {
        var h = Linear(module + ".dense", x);
        h = Method.Adapter(this, module, h, residual) ?? h;
        return LayerNorm(module + ".LayerNorm", B.Node("Add", [h, residual]));
    }

    /// <summary>The linear layer <paramref name="module"/> on <paramref name="x"/>, through the method's hook.
    /// </summary>
    public string Linear(string module, string x) => Method.Linear(this, module, x) ?? PlainLinear(module, x);

    /// <summary>Whether the encoder layers' plain matrices are written as dynamic int8.</summary>
    public bool QuantizeInt8 { get; init; }

    /// <summary>x·Wᵀ + b with the plain weights of <paramref name="module"/>.</summary>
    public string PlainLinear(string module, string x)
    {
        string y = QuantizeInt8 && module.StartsWith("bert.encoder.", StringComparison.Ordinal)
            ? Int8MatMul(module, x)
            : B.Node("MatMul", [x, Cached(module + ".weight.T", () => Weights.Plain(module + ".weight").Transpose())]);
        return Weights.HasPlain(module + ".bias") ? B.Node("Add", [y, Weight(module + ".bias")]) : y;
    }

    // x·Wᵀ with Wᵀ as int8 (one scale per output column, zero point 0) and x quantised per batch to uint8:
    // DynamicQuantizeLinear → MatMulInteger (int32) → float · (x scale · column scales). ONNX Runtime fuses the
    // pattern into its dynamic-quantised matmul kernel.
    private string Int8MatMul(string module, string x)
    {
        var (weights, scales) = Int8Weights.Quantize(Weights.Plain(module + ".weight").Transpose());
        string w = B.Initializer(module + ".weight.T.int8", global::Onnx.TensorProto.Types.DataType.Int8,
            [weights.Rows, weights.Columns], weights.Bytes);
        string s = B.Initializer(module + ".weight.T.scale", scales);
        var q = B.Nodes("DynamicQuantizeLinear", [x], 3);
        var product = B.Node("Cast", [B.Node("MatMulInteger", [q[0], w, q[2]])], [("to", 1L)]);
        return B.Node("Mul", [product, B.Node("Mul", [q[1], s])]);
    }

    /// <summary>x·Wᵀ (+ b) for given tensors (a method's own layers), under <paramref name="name"/>.</summary>
    public string Linear(string name, FloatTensor weight, FloatTensor? bias, string x)
    {
        var y = B.Node("MatMul", [x, Cached(name + ".weight.T", weight.Transpose)]);
        return bias is null ? y : B.Node("Add", [y, Cached(name + ".bias", () => bias)]);
    }

    /// <summary>LayerNormalization with the plain weight and bias of <paramref name="module"/>.</summary>
    public string LayerNorm(string module, string x) => B.Node("LayerNormalization",
        [x, Weight(module + ".weight"), Weight(module + ".bias")], [("axis", -1L), ("epsilon", Config.LayerNormEps)]);

    /// <summary>The encoder's feed-forward activation (<c>hidden_act</c>).</summary>
    public string Activation(string x) => Activation(Config.HiddenAct, x);

    /// <summary>An activation by its Hugging Face name, as <c>Activations.Get</c> computes it.</summary>
    public string Activation(string name, string x)
    {
        switch (name)
        {
            case "gelu":
                var erf = B.Node("Erf", [B.Node("Mul", [x, B.Scalar((float)(1 / Math.Sqrt(2)))])]);
                return B.Node("Mul", [B.Node("Mul", [x, B.Scalar(0.5f)]), B.Node("Add", [erf, B.Scalar(1f)])]);
            case "gelu_new" or "gelu_pytorch_tanh" or "gelu_fast":
                var cube = B.Node("Mul", [B.Node("Mul", [x, x]), x]);
                var inner = B.Node("Add", [x, B.Node("Mul", [cube, B.Scalar(0.044715f)])]);
                var tanh = B.Node("Tanh", [B.Node("Mul", [inner, B.Scalar((float)Math.Sqrt(2 / Math.PI))])]);
                return B.Node("Mul", [B.Node("Mul", [x, B.Scalar(0.5f)]), B.Node("Add", [tanh, B.Scalar(1f)])]);
            case "relu": return B.Node("Relu", [x]);
            case "silu" or "swish": return B.Node("Mul", [x, B.Node("Sigmoid", [x])]);
            default: throw new NotSupportedException($"Activation '{name}' cannot be exported to ONNX.");
        }
    }

    /// <summary>The initializer holding plain weight <paramref name="name"/> (added once).</summary>
    public string Weight(string name) => Cached(name, () => Weights.Plain(name));

    /// <summary>An initializer added once under <paramref name="name"/>, made by <paramref name="make"/>.</summary>
    public string Cached(string name, Func<FloatTensor> make)
    {
        if (!_initializers.TryGetValue(name, out var initializer))
            _initializers[name] = initializer = B.Initializer(name, make());
        return initializer;
    }

    /// <summary>[batch, 1, ..., 1] ones shaped to tile a constant across <paramref name="like"/>'s batch.</summary>
    public string BatchOf(string like) => B.Node("Slice", [B.Node("Shape", [like]), B.Int64s(0), B.Int64s(1)]);

    /// <summary>
    /// <paramref name="constant"/> [1, ...] repeated along its first axis to <paramref name="like"/>'s batch size.
    /// </summary>
    public string TileToBatch(string constant, string like, int rank)
    {
        var repeats = B.Node("Concat", [BatchOf(like), B.Int64s(Enumerable.Repeat(1L, rank - 1).ToArray())],
            [("axis", 0L)]);
        return B.Node("Tile", [constant, repeats]);
    }
}
