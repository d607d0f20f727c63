using System.Text.Json;
using System.Text.Json.Nodes;

namespace Microsoft.ML.Peft.Modeling;

/// <summary>The architecture family of a transformer encoder; decides position ids and checkpoint names.</summary>
public enum EncoderArchitecture
{
    /// <summary>BERT and BERT-shaped models (MiniLM, arctic-embed).</summary>
    Bert,
    /// <summary>RoBERTa: positions start after the padding id; token type embeddings usually have one row.</summary>
    Roberta,
    /// <summary>
    /// DistilBERT: no token type embeddings; checkpoints use <c>transformer.layer.N.attention.q_lin</c> names.
    /// </summary>
    DistilBert,
}

/// <summary>
/// Shape of a BERT-family encoder, readable from (and writable to) a Hugging Face <c>config.json</c>.
/// </summary>
public sealed record EncoderConfig
{
    /// <summary>Architecture family (Hugging Face <c>model_type</c>).</summary>
    public EncoderArchitecture Architecture { get; init; } = EncoderArchitecture.Bert;
    /// <summary>Width of the hidden states (<c>hidden_size</c>).</summary>
    public int HiddenSize { get; init; } = 384;
    /// <summary>Number of transformer layers (<c>num_hidden_layers</c>).</summary>
    public int NumHiddenLayers { get; init; } = 6;
    /// <summary>Number of attention heads (<c>num_attention_heads</c>).</summary>
    public int NumAttentionHeads { get; init; } = 12;
    /// <summary>Width of the feed-forward inner layer (<c>intermediate_size</c>).</summary>
    public int IntermediateSize { get; init; } = 1536;
    /// <summary>Vocabulary size (<c>vocab_size</c>).</summary>
    public int VocabSize { get; init; } = 30522;
    /// <summary>Number of position embeddings (<c>max_position_embeddings</c>).</summary>
    public int MaxPositionEmbeddings { get; init; } = 512;
    /// <summary>
    /// Number of token type (segment) embeddings (<c>type_vocab_size</c>); 0 when the model has none.
    /// </summary>
    public int TypeVocabSize { get; init; } = 2;
    /// <summary>Epsilon of every LayerNorm (<c>layer_norm_eps</c>).</summary>
    public double LayerNormEps { get; init; } = 1e-12;
    /// <summary>
    /// Feed-forward activation (<c>hidden_act</c>): <c>gelu</c> (erf), <c>gelu_new</c>/<c>gelu_pytorch_tanh</c> (tanh),
    /// <c>relu</c>.
    /// </summary>
    public string HiddenAct { get; init; } = "gelu";
    /// <summary>Padding token id (<c>pad_token_id</c>).</summary>
    public int PadTokenId { get; init; }
    /// <summary>Dropout on embeddings and sub-layer outputs during training (<c>hidden_dropout_prob</c>).</summary>
    public double HiddenDropoutProb { get; init; } = 0.1;
    /// <summary>Dropout on attention probabilities during training (<c>attention_probs_dropout_prob</c>).</summary>
    public double AttentionDropoutProb { get; init; } = 0.1;

    /// <summary>Width of one attention head.</summary>
    public int HeadSize => HiddenSize / NumAttentionHeads;

    /// <summary>First position id: RoBERTa counts positions from <c>pad_token_id + 1</c>, others from 0.</summary>
    public int PositionOffset => Architecture == EncoderArchitecture.Roberta ? PadTokenId + 1 : 0;

    /// <summary>Longest input the position embeddings allow, in tokens.</summary>
    public int MaxSequenceLength => MaxPositionEmbeddings - PositionOffset;

    /// <summary>
    /// Checks that the sizes are consistent; throws <see cref="ArgumentException"/> naming the field at fault.
    /// </summary>
    public EncoderConfig Validate()
    {
        static void Positive(int v, string name)
        {
            if (v <= 0) throw new ArgumentException($"Encoder config '{name}' must be positive, got {v}.");
        }
        Positive(HiddenSize, "hidden_size");
        Positive(NumHiddenLayers, "num_hidden_layers");
        Positive(NumAttentionHeads, "num_attention_heads");
        Positive(IntermediateSize, "intermediate_size");
        Positive(VocabSize, "vocab_size");
        Positive(MaxPositionEmbeddings, "max_position_embeddings");
        if (HiddenSize % NumAttentionHeads != 0)
            throw new ArgumentException(
                $"Encoder config 'hidden_size' ({HiddenSize}) must be divisible by " +
                $"'num_attention_heads' ({NumAttentionHeads}).");
        if (TypeVocabSize < 0)
            throw new ArgumentException($"Encoder config 'type_vocab_size' must not be negative, got {TypeVocabSize}.");
        if (MaxSequenceLength <= 2)
            throw new ArgumentException(
                "Encoder config leaves no room for tokens: " +
                $"max_position_embeddings {MaxPositionEmbeddings}, pad_token_id {PadTokenId}.");
        _ = Modeling.Activations.Get(HiddenAct);
        return this;
    }

    /// <summary>Reads a Hugging Face <c>config.json</c> text (BERT, RoBERTa, DistilBERT field names).</summary>
    public static EncoderConfig FromJson(string json)
    {
        var node = JsonNode.Parse(json)?.AsObject() ?? throw new FormatException("config.json is not a JSON object.");
        string modelType = (string?)node["model_type"] ?? "bert";
        int Int(string key, int fallback) => node[key] is JsonValue v && v.TryGetValue<int>(out var i) ? i : fallback;
        double Dbl(string key, double fallback) =>
            node[key] is JsonValue v && v.TryGetValue<double>(out var d) ? d : fallback;
        string Str(string key, string fallback) =>
            node[key] is JsonValue v && v.TryGetValue<string>(out var s) ? s : fallback;

        EncoderConfig config = modelType switch
        {
            "distilbert" => new EncoderConfig
            {
                Architecture = EncoderArchitecture.DistilBert,
                HiddenSize = Int("dim", 768),
                NumHiddenLayers = Int("n_layers", 6),
                NumAttentionHeads = Int("n_heads", 12),
                IntermediateSize = Int("hidden_dim", 3072),
                VocabSize = Int("vocab_size", 30522),
                MaxPositionEmbeddings = Int("max_position_embeddings", 512),
                TypeVocabSize = 0,
                LayerNormEps = 1e-12,
                HiddenAct = Str("activation", "gelu"),
                PadTokenId = Int("pad_token_id", 0),
                HiddenDropoutProb = Dbl("dropout", 0.1),
                AttentionDropoutProb = Dbl("attention_dropout", 0.1),
            },
            _ => new EncoderConfig
            {
                Architecture = modelType is "roberta" or "xlm-roberta" or "camembert"
                    ? EncoderArchitecture.Roberta
                    : EncoderArchitecture.Bert,
                HiddenSize = Int("hidden_size", 768),
                NumHiddenLayers = Int("num_hidden_layers", 12),
                NumAttentionHeads = Int("num_attention_heads", 12),
                IntermediateSize = Int("intermediate_size", 3072),
                VocabSize = Int("vocab_size", 30522),
                MaxPositionEmbeddings = Int("max_position_embeddings", 512),
                TypeVocabSize = Int("type_vocab_size", 2),
                LayerNormEps = Dbl("layer_norm_eps", 1e-12),
                HiddenAct = Str("hidden_act", "gelu"),
                PadTokenId = Int("pad_token_id", modelType == "roberta" ? 1 : 0),
                HiddenDropoutProb = Dbl("hidden_dropout_prob", 0.1),
                AttentionDropoutProb = Dbl("attention_probs_dropout_prob", 0.1),
            },
        };
        return config.Validate();
    }

    /// <summary>Reads a Hugging Face <c>config.json</c> file.</summary>
    public static EncoderConfig FromFile(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"Encoder config file '{path}' does not exist.", path);
        try { return FromJson(File.ReadAllText(path)); }
        catch (Exception e) when (e is JsonException or FormatException or ArgumentException)
        {
            throw new FormatException($"Encoder config file '{path}' is not a valid config.json: {e.Message}", e);
        }
    }

    /// <summary>Writes this config as a Hugging Face <c>config.json</c> text.</summary>
    public string ToJson()
    {
        var o = Architecture == EncoderArchitecture.DistilBert
            ? new JsonObject
            {
                ["model_type"] = "distilbert", ["dim"] = HiddenSize, ["n_layers"] = NumHiddenLayers,
                ["n_heads"] = NumAttentionHeads, ["hidden_dim"] = IntermediateSize, ["vocab_size"] = VocabSize,
                ["max_position_embeddings"] = MaxPositionEmbeddings,
                ["activation"] = HiddenAct, ["pad_token_id"] = PadTokenId,
                ["dropout"] = HiddenDropoutProb, ["attention_dropout"] = AttentionDropoutProb,
            }
            : new JsonObject
            {
                ["model_type"] = Architecture == EncoderArchitecture.Roberta ? "roberta" : "bert",
                ["hidden_size"] = HiddenSize, ["num_hidden_layers"] = NumHiddenLayers,
                ["num_attention_heads"] = NumAttentionHeads, ["intermediate_size"] = IntermediateSize,
                ["vocab_size"] = VocabSize, ["max_position_embeddings"] = MaxPositionEmbeddings,
                ["type_vocab_size"] = TypeVocabSize, ["layer_norm_eps"] = LayerNormEps, ["hidden_act"] = HiddenAct,
                ["pad_token_id"] = PadTokenId,
                ["hidden_dropout_prob"] = HiddenDropoutProb, ["attention_probs_dropout_prob"] = AttentionDropoutProb,
            };
        return o.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }
}
