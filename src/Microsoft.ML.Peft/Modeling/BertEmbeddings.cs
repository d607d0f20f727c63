using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Modeling;

/// <summary>
/// Word + position (+ token type) embeddings, then LayerNorm and dropout (Hugging Face <c>embeddings</c>).
/// </summary>
public sealed class BertEmbeddings : nn.Module<Tensor, Tensor?, Tensor>
{
    private readonly EncoderConfig _config;
    internal readonly Embedding word_embeddings;
    internal readonly Embedding position_embeddings;
    internal readonly Embedding? token_type_embeddings;
    internal readonly LayerNorm LayerNorm;
    internal readonly Dropout dropout;

    /// <summary>Creates randomly initialised embeddings shaped by <paramref name="config"/>.</summary>
    public BertEmbeddings(EncoderConfig config) : base("embeddings")
    {
        _config = config;
        word_embeddings = nn.Embedding(config.VocabSize, config.HiddenSize, padding_idx: config.PadTokenId);
        position_embeddings = nn.Embedding(config.MaxPositionEmbeddings, config.HiddenSize);
        if (config.TypeVocabSize > 0) token_type_embeddings = nn.Embedding(config.TypeVocabSize, config.HiddenSize);
        LayerNorm = nn.LayerNorm(config.HiddenSize, eps: config.LayerNormEps);
        dropout = nn.Dropout(config.HiddenDropoutProb);
        RegisterComponents();
    }

    /// <summary>Embeds <paramref name="inputIds"/> [batch, seq]; returns [batch, seq, hidden].</summary>
    public override Tensor forward(Tensor inputIds, Tensor? tokenTypeIds) => Forward(inputIds, tokenTypeIds, null, 0);

    /// <summary>
    /// Embeds <paramref name="inputIds"/> as transformers does when a <c>peft</c> prompt-learning method is active:
    /// <paramref name="prompt"/> [batch, P, hidden] (or null) joins the word embeddings in front, as peft's
    /// <c>inputs_embeds</c>, so position embeddings 0..P−1, token type 0 and LayerNorm apply to it; the text's
    /// positions start at P plus <paramref name="positionOffset"/> (transformers' <c>past_key_values_length</c>, which
    /// peft's prefix tuning sets). Returns [batch, P + seq, hidden].
    /// </summary>
    internal Tensor Forward(Tensor inputIds, Tensor? tokenTypeIds, Tensor? prompt, int positionOffset)
    {
        using var scope = NewDisposeScope();
        var embeddings = word_embeddings.forward(inputIds);
        var types = token_type_embeddings is null ? null : tokenTypeIds ?? zeros_like(inputIds);
        long promptLength = 0;
        if (prompt is not null)
        {
            promptLength = prompt.shape[1];
            embeddings = cat([prompt.to(embeddings.dtype), embeddings], 1);
            if (types is not null)
                types = cat([zeros(inputIds.shape[0], promptLength, dtype: types.dtype, device: types.device), types],
                    1);
        }
        embeddings = embeddings + position_embeddings.forward(PositionIds(inputIds, promptLength, positionOffset));
        if (types is not null) embeddings = embeddings + token_type_embeddings!.forward(types);
        return dropout.forward(LayerNorm.forward(embeddings)).MoveToOuterDisposeScope();
    }

    // RoBERTa numbers real tokens from pad_token_id + 1 and gives padding the pad id (Hugging Face's
    // create_position_ids_from_input_ids); BERT counts from 0 regardless of padding. A prompt in front (prompt
    // learning) takes the first positions and shifts the text's; an offset (a prefix's length) shifts them further.
    private Tensor PositionIds(Tensor inputIds, long promptLength, int offset)
    {
        if (_config.Architecture == EncoderArchitecture.Roberta)
        {
            if (promptLength > 0)
                throw new NotSupportedException("Prompt positions are defined for BERT encoders only.");
            var notPad = inputIds.ne(_config.PadTokenId).to(ScalarType.Int64);
            return (notPad.cumsum(1) + offset) * notPad + _config.PadTokenId;
        }
        return arange(offset, offset + promptLength + inputIds.shape[1], dtype: ScalarType.Int64,
            device: inputIds.device).unsqueeze(0);
    }
}
