namespace Microsoft.ML.Peft.Onnx;

/// <summary>
/// What one PEFT method contributes to an exported graph. The encoder exporter calls these hooks at the places the
/// TorchSharp model lets a method in (a linear layer, a sub-layer's output, the feed-forward activation, attention's
/// keys and values, the embedded input); each method's folder overrides the hooks it needs, and the exporter never
/// asks which method it is. Methods that merge do all their work in <see cref="Merge"/> and add no nodes.
/// </summary>
internal class OnnxMethodExport
{
    /// <summary>Folds the method's trained tensors into the plain weights, taking them from
    /// <paramref name="weights"/>. Called once, before any node is emitted.</summary>
    public virtual void Merge(ExportWeights weights) { }

    /// <summary>
    /// The output of the linear layer <paramref name="module"/> (e.g. <c>bert.encoder.layer.0.attention.self.query</c>)
    /// for <paramref name="input"/>, or null for the plain layer.
    /// </summary>
    public virtual string? Linear(EncoderGraph g, string module, string input) => null;

    /// <summary>
    /// What replaces h = dense(x) in the residual block <paramref name="module"/> (<c>...attention.output</c> or
    /// <c>...output</c>) before its LayerNorm, given the block's input <paramref name="residual"/>; null for h.
    /// </summary>
    public virtual string? Adapter(EncoderGraph g, string module, string h, string residual) => null;

    /// <summary>The feed-forward activations of <paramref name="module"/> (<c>...intermediate</c>) rescaled, or null.
    /// </summary>
    public virtual string? ActivationScale(EncoderGraph g, string module, string activations) => null;

    /// <summary>
    /// Keys and values [batch, heads, prefix, head size] prepended in layer <paramref name="layer"/>'s attention, given
    /// its input [batch, seq, hidden] and additive mask; null for none.
    /// </summary>
    public virtual (string Keys, string Values)? Prefix(EncoderGraph g, int layer, string hidden, string additiveMask)
        => null;

    /// <summary>Virtual tokens prepended to the embedded input (prompt tuning); 0 for none.</summary>
    public virtual int PromptLength => 0;

    /// <summary>
    /// True when the prompt joins the word embeddings before position and type embeddings and LayerNorm, and is pooled
    /// as part of the sequence (<c>peft</c>'s layout, <see cref="Modeling.BertModel.PromptIsPooled"/>).
    /// </summary>
    public virtual bool PromptThroughEmbeddings => false;

    /// <summary>Where the text's position ids start (<see cref="Modeling.BertModel.PositionOffset"/>); 0 by default.
    /// Known once <see cref="Merge"/> has run.</summary>
    public virtual int PositionOffset => 0;

    /// <summary>The virtual-token embeddings [batch, <see cref="PromptLength"/>, hidden] for a batch shaped like
    /// <paramref name="hidden"/>.</summary>
    public virtual string Prompt(EncoderGraph g, string hidden) =>
        throw new InvalidOperationException("This method prepends no prompt.");
}
