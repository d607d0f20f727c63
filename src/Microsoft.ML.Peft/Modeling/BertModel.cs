using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Modeling;

/// <summary>The stack of transformer layers (Hugging Face <c>encoder</c>).</summary>
public sealed class BertEncoder : nn.Module<Tensor, Tensor, Tensor>
{
    internal readonly ModuleList<BertLayer> layer;

    /// <summary>Creates <see cref="EncoderConfig.NumHiddenLayers"/> layers.</summary>
    public BertEncoder(EncoderConfig config) : base("encoder")
    {
        layer = new ModuleList<BertLayer>(
            Enumerable.Range(0, config.NumHiddenLayers).Select(_ => new BertLayer(config)).ToArray());
        RegisterComponents();
    }

    /// <summary>
    /// When true, each layer runs through a <see cref="LayerCheckpoint"/> while the module is training and autograd is
    /// on: its activations are recomputed in the backward pass instead of being kept. Evaluation and no_grad forward
    /// passes never checkpoint. Default false.
    /// </summary>
    internal bool GradientCheckpointing { get; set; }

    private Exception? _backwardFailure;

    /// <summary>Runs every layer in turn.</summary>
    public override Tensor forward(Tensor hidden, Tensor additiveMask)
    {
        LayerCheckpoint.ReleaseHandedOver();
        bool checkpoint = GradientCheckpointing && training && is_grad_enabled();
        using var anchor = checkpoint ? empty(0, device: hidden.device, requires_grad: true) : null;
        var x = hidden;
        foreach (var l in layer)
        {
            Tensor next;
            if (checkpoint)
            {
                // The scope releases what apply() makes besides the output:
                // TorchSharp's second handle on it and an empty_like cache.
                using var scope = NewDisposeScope();
                next = LayerCheckpoint.Run(this, l, x, additiveMask, anchor!).MoveToOuterDisposeScope();
            }
            else next = l.forward(x, additiveMask);
            if (!ReferenceEquals(x, hidden)) x.Dispose();
            x = next;
        }
        return x;
    }

    /// <summary>
    /// Keeps the first exception a checkpointed layer's recomputation threw inside the autograd engine.
    /// </summary>
    internal void RecordBackwardFailure(Exception e) => Interlocked.CompareExchange(ref _backwardFailure, e, null);

    /// <summary>
    /// Throws (once) if a checkpointed layer failed to recompute during the last backward pass; its gradients are then
    /// missing. Call after <c>backward()</c>: exceptions cannot travel through the native autograd engine.
    /// </summary>
    internal void ThrowIfBackwardFailed()
    {
        if (Interlocked.Exchange(ref _backwardFailure, null) is { } e)
            throw new InvalidOperationException(
                $"Gradient checkpointing: recomputing an encoder layer in the backward pass failed: {e.Message}", e);
    }
}

/// <summary>
/// Dense + tanh over the first token (Hugging Face <c>pooler</c>), present only in checkpoints that have one.
/// </summary>
public sealed class BertPooler : nn.Module<Tensor, Tensor>
{
    internal readonly Linear dense;

    /// <summary>Creates the pooler.</summary>
    public BertPooler(EncoderConfig config) : base("pooler")
    {
        dense = nn.Linear(config.HiddenSize, config.HiddenSize);
        RegisterComponents();
    }

    /// <summary>Returns tanh(dense(hidden[:, 0])).</summary>
    public override Tensor forward(Tensor lastHiddenState)
    {
        using var scope = NewDisposeScope();
        return dense.forward(lastHiddenState[.., 0]).tanh().MoveToOuterDisposeScope();
    }
}

/// <summary>
/// A BERT-family encoder whose parameter names match Hugging Face's <c>BertModel</c>
/// (<c>embeddings.word_embeddings.weight</c>, <c>encoder.layer.0.attention.self.query.weight</c>, ...), so checkpoints
/// and PEFT target-module names carry over. RoBERTa uses the same modules with offset positions; DistilBERT checkpoints
/// are renamed on load (<see cref="CheckpointNames"/>).
/// </summary>
public sealed class BertModel : nn.Module<Tensor, Tensor, Tensor?, Tensor>
{
    internal readonly BertEmbeddings embeddings;
    internal readonly BertEncoder encoder;
    internal readonly BertPooler? pooler;

    /// <summary>The configuration this encoder was built from.</summary>
    public EncoderConfig Config { get; }

    /// <summary>
    /// Creates a randomly initialised encoder; <paramref name="withPooler"/> adds the checkpoint's pooler.
    /// </summary>
    public BertModel(EncoderConfig config, bool withPooler = false) : base("bert")
    {
        Config = config.Validate();
        embeddings = new BertEmbeddings(config);
        encoder = new BertEncoder(config);
        if (withPooler) pooler = new BertPooler(config);
        RegisterComponents();
    }

    /// <summary>
    /// Optional trainable virtual tokens prepended after the embeddings (prompt tuning); null when absent.
    /// </summary>
    internal IInputPrompt? Prompt { get; set; }

    /// <summary>Number of virtual tokens <see cref="forward"/> prepends (0 without a prompt).</summary>
    public int PromptLength => Prompt?.Length ?? 0;

    /// <summary>
    /// True when the prompt goes through the embedding layer and is pooled as part of the sequence (<c>peft</c>'s
    /// layout: its first virtual token is what <c>BertForSequenceClassification</c> pools); false when it is added
    /// after the embeddings and pooling skips it (this library's default).
    /// </summary>
    internal bool PromptIsPooled => Prompt is { ThroughEmbeddings: true };

    /// <summary>
    /// Where the text's position ids start (0 by default): <c>peft</c>'s prefix tuning hands BERT its prefixes as
    /// <c>past_key_values</c>, and transformers then counts the text's positions from the prefix length.
    /// </summary>
    internal int PositionOffset { get; set; }

    /// <summary>True when the encoder has a pooler (dense + tanh on the first token).</summary>
    public bool HasPooler => pooler is not null;

    /// <summary>The transformer layers, in order.</summary>
    public IReadOnlyList<BertLayer> Layers => _layers ??= encoder.layer.ToArray();
    private BertLayer[]? _layers;

    /// <summary>
    /// Encodes a batch. <paramref name="inputIds"/> and <paramref name="attentionMask"/> are int64 [batch, seq]
    /// (mask 1 for real tokens, 0 for padding); <paramref name="tokenTypeIds"/> may be null. Returns the
    /// <c>last_hidden_state</c> [batch, <see cref="PromptLength"/> + seq, hidden].
    /// </summary>
    public override Tensor forward(Tensor inputIds, Tensor attentionMask, Tensor? tokenTypeIds)
    {
        using var scope = NewDisposeScope();
        var weight = embeddings.word_embeddings.weight!;
        var prompt = Prompt?.Embeddings(inputIds.shape[0], weight.dtype, weight.device);
        // peft's layout embeds the prompt with the text; otherwise it goes in front of the embedded text.
        var hidden = embeddings.Forward(inputIds, tokenTypeIds, PromptIsPooled ? prompt : null, PositionOffset);
        if (prompt is not null)
        {
            if (!PromptIsPooled) hidden = cat([prompt, hidden], 1);
            // Virtual tokens are always attended to.
            attentionMask = cat(
                [ones(inputIds.shape[0], prompt.shape[1], dtype: attentionMask.dtype, device: attentionMask.device),
                    attentionMask], 1);
        }
        var additive = AdditiveMask(attentionMask, hidden.dtype);
        return encoder.forward(hidden, additive).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Returns the pooler output for a <c>last_hidden_state</c>; throws when the checkpoint has no pooler.
    /// </summary>
    public Tensor Pool(Tensor lastHiddenState) =>
        (pooler ?? throw new InvalidOperationException("This encoder has no pooler; use CLS or mean pooling."))
            .forward(lastHiddenState);

    /// <summary>
    /// Turns a 1/0 mask [batch, seq] into an additive mask [batch, 1, 1, seq]: 0 to attend, a large negative to ignore.
    /// </summary>
    internal static Tensor AdditiveMask(Tensor attentionMask, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var keep = attentionMask.to(dtype).unsqueeze(1).unsqueeze(2);
        // finfo.min rather than -inf keeps fully padded rows finite.
        double min = dtype == ScalarType.BFloat16 ? -3.38e38 : dtype == ScalarType.Float16 ? -65504.0 : float.MinValue;
        return ((1.0 - keep) * min).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// Supplies virtual-token embeddings [batch, length, hidden] prepended to the input (prompt-tuning methods).
/// </summary>
internal interface IInputPrompt
{
    int Length { get; }

    /// <summary>True when the prompt joins the word embeddings (peft's layout), see
    /// <see cref="BertModel.PromptIsPooled"/>.</summary>
    bool ThroughEmbeddings { get; }

    Tensor Embeddings(long batch, ScalarType dtype, Device device);
}
