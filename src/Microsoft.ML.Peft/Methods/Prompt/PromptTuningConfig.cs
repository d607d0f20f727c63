using Microsoft.ML.Peft.BaseModels;
using Microsoft.ML.Peft.Modeling;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Methods.Prompt;

/// <summary>
/// Prompt tuning (Lester et al., 2021; <c>peft</c>'s <c>PromptTuningConfig</c>): P trainable vectors
/// <c>prompt_embeddings</c> [P, H] are put in front of every input, after the embedding layer, and attended to by every
/// token; nothing else in the encoder changes. Pooling ignores them. Known to lag behind the other methods on small
/// encoders (Lester et al. saw it match fine-tuning only from ~10B parameters); use it for its tiny footprint.
/// The output differs from the base model's from the start (as in peft); not mergeable.
/// Trainable parameters: <c>P·H</c>; MiniLM-L6 (H = 384), P = 20: 7,680.
/// </summary>
/// <remarks>
/// peft concatenates the prompt before the embedding layer (so it also gets position embeddings and the real tokens
/// shift by P positions); here, unless <see cref="PeftLayout"/> is set, the encoder's <c>Prompt</c> hook prepends it
/// after, so the real tokens keep their positions. To match that, <see cref="PromptTuningInit.SampleVocab"/> and
/// <see cref="PromptTuningInit.Text"/> start from the embedding layer's output for the chosen tokens (word + position +
/// type embeddings, LayerNorm), not from raw word-embedding rows (which <see cref="PeftLayout"/> uses, as peft).
/// </remarks>
public sealed class PromptTuningConfig : PeftMethodConfig
{
    /// <inheritdoc/>
    public override string MethodName => "prompt";

    /// <summary>
    /// 1e-1: the prompt is a handful of vectors and needs large steps (Lester et al. used 0.3 with Adafactor). Measured
    /// on 3,000 SST-2 rows at the stage's default plan with AdamW: 3e-2 0.711, 1e-1 0.742, 3e-1 0.509 (collapsed).
    /// </summary>
    public override double DefaultLearningRate => 1e-1;

    /// <summary>Number P of virtual tokens. Default 20.</summary>
    public int NumVirtualTokens { get; set; } = 20;

    /// <summary>How the virtual tokens start. Default <see cref="PromptTuningInit.Random"/> (as peft).</summary>
    public PromptTuningInit Init { get; set; } = PromptTuningInit.Random;

    /// <summary>
    /// Compute as Hugging Face <c>peft</c>'s <c>PROMPT_TUNING</c> does with transformers'
    /// <c>BertForSequenceClassification</c>, so that <c>SavePretrained</c> can write the stage as a peft adapter (and
    /// <c>FromPretrained</c> reads peft's): the virtual tokens join the word embeddings in front of the text, so
    /// position embeddings 0..P−1, token type 0 and the embedding LayerNorm apply to them and the text's positions
    /// start at P (leaving P fewer for the text); the pooler reads the first virtual token, not [CLS]. Token-based
    /// inits start from raw word-embedding rows, as peft's. BERT bases only. Default false (the prompt is added after
    /// the embeddings and pooling skips it).
    /// </summary>
    public bool PeftLayout { get; set; }

    /// <summary>
    /// The text behind <see cref="InitTokenIds"/>, kept for the record (the library has no tokenizer at attach time).
    /// Default null.
    /// </summary>
    public string? InitText { get; set; }

    /// <summary>
    /// Token ids (from the base model's tokenizer) whose embeddings start the prompt when <see cref="Init"/> is
    /// <see cref="PromptTuningInit.Text"/>; repeated or cut to <see cref="NumVirtualTokens"/>. <see cref="FromText"/>
    /// fills it. Default null.
    /// </summary>
    public int[]? InitTokenIds { get; set; }

    /// <summary>
    /// A <see cref="PromptTuningInit.Text"/> config whose prompt starts as <paramref name="text"/>, tokenized (without
    /// special tokens) by <paramref name="baseModel"/>'s tokenizer, e.g.
    /// <c>"Classify if the review is positive or negative"</c>.
    /// </summary>
    public static PromptTuningConfig FromText(string text, BaseModel baseModel, int numVirtualTokens = 20)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(text);
        ArgumentNullException.ThrowIfNull(baseModel);
        var ids = baseModel.CreateTokenizer().EncodeWithoutSpecialTokens(text).ToArray();
        if (ids.Length == 0) throw new ArgumentException($"'{text}' gives no tokens.", nameof(text));
        return new PromptTuningConfig
        {
            Init = PromptTuningInit.Text,
            InitText = text,
            InitTokenIds = ids,
            NumVirtualTokens = numVirtualTokens
        };
    }

    /// <inheritdoc/>
    public override void Validate()
    {
        Require(NumVirtualTokens >= 1, nameof(NumVirtualTokens), $"must be at least 1, got {NumVirtualTokens}.");
        Require(Enum.IsDefined(Init), nameof(Init), $"has an unknown value {Init}.");
        if (Init == PromptTuningInit.Text)
            Require(InitTokenIds is { Length: > 0 } && InitTokenIds.All(i => i >= 0), nameof(InitTokenIds),
                "must hold the init text's token ids when Init is Text; " +
                "build the config with PromptTuningConfig.FromText(text, baseModel).");
    }

    internal override void Attach(PeftModel model)
    {
        var config = model.Encoder.Config;
        if (model.Encoder.Prompt is not null)
            throw new InvalidOperationException(
                "This encoder already carries a prompt; attach one prompt method per model.");
        if (NumVirtualTokens > config.MaxSequenceLength && Init != PromptTuningInit.Random)
            throw new ArgumentOutOfRangeException(nameof(NumVirtualTokens),
                $"Option 'NumVirtualTokens' ({NumVirtualTokens}) exceeds the encoder's " +
                $"{config.MaxSequenceLength} positions, which token-based inits need.");
        if (PeftLayout && config.Architecture != EncoderArchitecture.Bert)
            throw new NotSupportedException($"Option 'PeftLayout' reproduces transformers' BERT; this base is "
                + $"{config.Architecture}.");
        var device = model.classifier.weight!.device;
        var table = nn.Embedding(NumVirtualTokens, config.HiddenSize, device: device); // N(0, 1), peft's RANDOM
        if (Init != PromptTuningInit.Random)
        {
            using var ids = InitIds(config.VocabSize, device);
            // peft copies word-embedding rows, which then go through the embedding layer as the text does; after the
            // embeddings (this library's layout) the prompt starts as the embedding layer's output for those tokens.
            using var start = PeftLayout
                ? model.Encoder.embeddings.word_embeddings.forward(ids).detach()
                : EmbedTokens(model.Encoder, ids);
            using (no_grad()) table.weight!.copy_(start);
        }
        model.register_module(ChildName, table);
        model.Encoder.Prompt = new PromptEmbedding(table, PeftLayout);
    }

    private const string ChildName = "prompt_embeddings";

    internal override bool IsTrainable(string parameterName) =>
        parameterName.StartsWith(ChildName + ".", StringComparison.Ordinal);

    /// <summary>The trained prompt as a constant prepended to the embedded input (or, peft's layout, to the word
    /// embeddings).</summary>
    internal override Onnx.OnnxMethodExport CreateOnnxExport() => new PromptOnnxExport(PeftLayout);

    /// <inheritdoc/>
    internal override int ReservedPositions => PeftLayout ? NumVirtualTokens : 0;

    /// <summary>
    /// peft's <c>PROMPT_TUNING</c> with <see cref="PeftLayout"/>. Without it, refused: peft prepends the virtual
    /// tokens to the word embeddings (so position, token-type embeddings and LayerNorm apply to them) and
    /// BertForSequenceClassification's pooler then reads the first virtual token; this layout adds the prompts after
    /// the embeddings and pools the real [CLS].
    /// </summary>
    internal override HuggingFace.PeftAdapterMapping CreatePeftAdapterMapping() => PeftLayout
        ? new PromptPeftMapping(this)
        : throw new NotSupportedException(
            "Prompt tuning trained without PeftLayout cannot be saved as a peft PROMPT_TUNING adapter: peft feeds the "
            + "virtual tokens through BERT's embeddings and its classifier pools the first virtual token, while this "
            + "stage inserted them after the embeddings and pooled [CLS], so peft would score differently. Train "
            + "with PromptTuningConfig.PeftLayout = true to export. See docs/huggingface.md.");

    private Tensor InitIds(int vocabSize, Device device)
    {
        if (Init == PromptTuningInit.SampleVocab)
            return randint(0, vocabSize, [NumVirtualTokens], dtype: ScalarType.Int64, device: device);
        var text = InitTokenIds!;
        var bad = text.FirstOrDefault(i => i >= vocabSize, -1);
        if (bad >= 0)
            throw new ArgumentOutOfRangeException(nameof(InitTokenIds),
                $"Option 'InitTokenIds' holds id {bad}, outside this encoder's vocabulary of {vocabSize}; " +
                "tokenize with the same base model.");
        // As peft: repeat the text's ids until there are enough, then cut.
        var ids = Enumerable.Range(0, NumVirtualTokens).Select(i => (long)text[i % text.Length]).ToArray();
        return tensor(ids, device: device);
    }

    // The embedding layer's output for the tokens at positions 0..P-1, without dropout: what the encoder would see for
    // them.
    private static Tensor EmbedTokens(BertModel encoder, Tensor ids)
    {
        using var _ = no_grad();
        bool training = encoder.embeddings.training;
        encoder.embeddings.eval();
        try { return encoder.embeddings.forward(ids.unsqueeze(0), null).squeeze(0); }
        finally { encoder.embeddings.train(training); }
    }
}
