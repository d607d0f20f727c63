using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Modeling;

/// <summary>Multi-head self-attention projections (Hugging Face <c>attention.self</c>).</summary>
public sealed class BertSelfAttention : nn.Module<Tensor, Tensor, Tensor>
{
    private readonly int _heads;
    private readonly int _headSize;
    private double _dropout;
    internal nn.Module<Tensor, Tensor> query;
    internal nn.Module<Tensor, Tensor> key;
    internal nn.Module<Tensor, Tensor> value;

    /// <summary>
    /// Dropout on the attention probabilities during training (the checkpoint's <c>attention_probs_dropout_prob</c>
    /// unless changed). At 0, libtorch's fused (flash) attention kernel runs in training too; with dropout it falls
    /// back to the kernel that materialises every [seq × seq] score matrix.
    /// </summary>
    internal double AttentionDropout
    {
        get => _dropout;
        set => _dropout = value is >= 0 and < 1 ? value : throw new ArgumentOutOfRangeException(nameof(value));
    }

    /// <summary>
    /// Optional source of extra key/value positions prepended per layer (prefix tuning); null for plain attention.
    /// </summary>
    internal IKeyValuePrefix? Prefix { get; set; }

    /// <summary>Creates the query/key/value projections.</summary>
    public BertSelfAttention(EncoderConfig config) : base("self")
    {
        _heads = config.NumAttentionHeads;
        _headSize = config.HeadSize;
        _dropout = config.AttentionDropoutProb;
        query = nn.Linear(config.HiddenSize, config.HiddenSize);
        key = nn.Linear(config.HiddenSize, config.HiddenSize);
        value = nn.Linear(config.HiddenSize, config.HiddenSize);
        RegisterComponents();
    }

    /// <summary>
    /// Attends over <paramref name="hidden"/> [batch, seq, hidden] with an additive mask [batch, 1, 1, seq].
    /// </summary>
    public override Tensor forward(Tensor hidden, Tensor additiveMask)
    {
        using var scope = NewDisposeScope();
        long batch = hidden.shape[0], seq = hidden.shape[1];
        Tensor Split(Tensor x) => x.view(batch, -1, _heads, _headSize).transpose(1, 2);
        var q = Split(query.forward(hidden));
        var k = Split(key.forward(hidden));
        var v = Split(value.forward(hidden));
        var mask = additiveMask;
        if (Prefix is not null)
        {
            var (pk, pv) = Prefix.KeysAndValues(hidden, additiveMask);
            k = cat([pk, k], 2);
            v = cat([pv, v], 2);
            mask = cat([zeros(batch, 1, 1, pk.shape[2], dtype: mask.dtype, device: mask.device), mask], 3);
        }
        var context = nn.functional.scaled_dot_product_attention(q, k, v, mask, training ? _dropout : 0.0);
        return context.transpose(1, 2).reshape(batch, seq, _heads * _headSize).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// Supplies per-layer key/value prefixes [batch, heads, prefix, headSize] (used by prefix-tuning methods).
/// </summary>
internal interface IKeyValuePrefix
{
    (Tensor Keys, Tensor Values) KeysAndValues(long batch, ScalarType dtype, Device device);

    /// <summary>
    /// The prefixes for one batch, given the layer input [batch, seq, hidden] and its additive mask, for prefixes that
    /// depend on the input (UniPELT's gated prefix); input-independent prefixes keep the default.
    /// </summary>
    (Tensor Keys, Tensor Values) KeysAndValues(Tensor hidden, Tensor additiveMask) =>
        KeysAndValues(hidden.shape[0], hidden.dtype, hidden.device);
}

/// <summary>
/// Projection, dropout and residual LayerNorm after a sub-layer (Hugging Face <c>attention.output</c> and
/// <c>output</c>).
/// </summary>
public sealed class BertResidualOutput : nn.Module<Tensor, Tensor, Tensor>
{
    internal nn.Module<Tensor, Tensor> dense;
    internal readonly LayerNorm LayerNorm;
    internal readonly Dropout dropout;

    /// <summary>
    /// Optional bottleneck adapter before the residual LayerNorm, called with h = dropout(dense(x)) and the sub-layer's
    /// input (the residual); returns what replaces h (sequential adapters read h, parallel adapters the residual). Null
    /// when absent; the method that sets it also registers it as a child so its parameters are found and saved.
    /// </summary>
    internal nn.Module<Tensor, Tensor, Tensor>? Adapter { get; set; }

    /// <summary>Creates the block projecting <paramref name="inFeatures"/> back to the hidden size.</summary>
    public BertResidualOutput(EncoderConfig config, int inFeatures) : base("output")
    {
        dense = nn.Linear(inFeatures, config.HiddenSize);
        LayerNorm = nn.LayerNorm(config.HiddenSize, eps: config.LayerNormEps);
        dropout = nn.Dropout(config.HiddenDropoutProb);
        RegisterComponents();
    }

    /// <summary>Returns LayerNorm(dropout(dense(<paramref name="x"/>)) + <paramref name="residual"/>).</summary>
    public override Tensor forward(Tensor x, Tensor residual)
    {
        using var scope = NewDisposeScope();
        var h = dropout.forward(dense.forward(x));
        if (Adapter is not null) h = Adapter.forward(h, residual);
        return LayerNorm.forward(h + residual).MoveToOuterDisposeScope();
    }
}

/// <summary>Self-attention followed by its output block (Hugging Face <c>attention</c>).</summary>
public sealed class BertAttention : nn.Module<Tensor, Tensor, Tensor>
{
    internal readonly BertSelfAttention self;
    internal readonly BertResidualOutput output;

    /// <summary>Creates the attention block.</summary>
    public BertAttention(EncoderConfig config) : base("attention")
    {
        self = new BertSelfAttention(config);
        output = new BertResidualOutput(config, config.HiddenSize);
        RegisterComponents();
    }

    /// <summary>Returns the attention block's output for <paramref name="hidden"/>.</summary>
    public override Tensor forward(Tensor hidden, Tensor additiveMask)
    {
        using var scope = NewDisposeScope();
        return output.forward(self.forward(hidden, additiveMask), hidden).MoveToOuterDisposeScope();
    }
}
