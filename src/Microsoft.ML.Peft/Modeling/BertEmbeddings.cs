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
    public override Tensor forward(Tensor inputIds, Tensor? tokenTypeIds)
    {
        using var scope = NewDisposeScope();
        var embeddings = word_embeddings.forward(inputIds);
        embeddings = embeddings + position_embeddings.forward(PositionIds(inputIds));
        if (token_type_embeddings is not null)
        {
            var types = tokenTypeIds ?? zeros_like(inputIds);
            embeddings = embeddings + token_type_embeddings.forward(types);
        }
        return dropout.forward(LayerNorm.forward(embeddings)).MoveToOuterDisposeScope();
    }

    // RoBERTa numbers real tokens from pad_token_id + 1 and gives padding the pad id (Hugging Face's
    // create_position_ids_from_input_ids); BERT counts from 0 regardless of padding.
    private Tensor PositionIds(Tensor inputIds)
    {
        if (_config.Architecture == EncoderArchitecture.Roberta)
        {
            var notPad = inputIds.ne(_config.PadTokenId).to(ScalarType.Int64);
            return notPad.cumsum(1) * notPad + _config.PadTokenId;
        }
        return arange(inputIds.shape[1], dtype: ScalarType.Int64, device: inputIds.device).unsqueeze(0);
    }
}
