using Microsoft.ML.Peft.BaseModels;
using Microsoft.ML.Peft.Modeling;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Tests.HuggingFace;

/// <summary>
/// What Python computes for one row when peft's <c>PeftModelForSequenceClassification</c> wraps a transformers
/// <c>*ForSequenceClassification</c> model in eval mode, written from their sources with plain tensor operations on
/// the base's weights (the library's encoder modules are not used):
/// <list type="bullet">
/// <item>Embeddings (BertEmbeddings, RobertaEmbeddings): word + position + token type 0, LayerNorm; BERT counts
/// positions from 0, RoBERTa from padding_idx + 1; DistilBERT has no token types.</item>
/// <item>LoRA (peft/tuners/lora/layer.py): W x + B A x · alpha / r, added here to W.</item>
/// <item>PROMPT_TUNING (peft_model.py, forward): <c>inputs_embeds = cat(prompts, word_embeddings(input_ids))</c>, token
/// types extended with zeros, positions 0..P+L−1; the pooler reads position 0, the first virtual token.</item>
/// <item>PREFIX_TUNING (_prefix_tuning_forward, get_prompt): <c>prompt_embeddings</c> viewed as
/// [P, layers·2, heads, head size] and permuted so that layer l's keys are slice 2l and its values 2l+1, put before
/// each layer's own keys and values; the text's positions start at <c>past_key_values_length</c> = P.</item>
/// <item>Heads: BERT pooler (dense + tanh over position 0) → classifier; RoBERTa <c>classifier.dense</c> + tanh →
/// <c>classifier.out_proj</c> over position 0; DistilBERT <c>pre_classifier</c> + ReLU → classifier.</item>
/// </list>
/// </summary>
internal sealed class PeftReference
{
    private readonly Dictionary<string, Tensor> _w;
    private readonly EncoderConfig _config;
    private readonly Tensor _classifier, _bias;
    private Tensor? _prompt, _prefix, _dense, _denseBias;
    private int _tokens;

    public PeftReference(BaseModel baseModel, float[] weight, float[] bias)
    {
        var encoder = baseModel.CreateEncoder(withPooler: baseModel.HasPooler);
        _w = encoder.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone());
        _config = baseModel.Config;
        _bias = tensor(bias);
        _classifier = tensor(weight).reshape(bias.Length, -1);
    }

    /// <summary>A prompt-learning adapter's <c>prompt_embeddings</c>.</summary>
    public PeftReference WithPromptLearning(string peftType, int tokens, float[] promptEmbeddings)
    {
        _tokens = tokens;
        var t = tensor(promptEmbeddings).reshape(tokens, -1);
        if (peftType == "PREFIX_TUNING") _prefix = t; else _prompt = t;
        return this;
    }

    /// <summary>A LoRA pair on <paramref name="module"/> (BERT's name, e.g. encoder.layer.0.attention.self.query).
    /// </summary>
    public PeftReference WithLora(string module, float[] a, float[] b, int rank, double alpha)
    {
        var w = _w[module + ".weight"];
        var delta = tensor(b).reshape(w.shape[0], rank).matmul(tensor(a).reshape(rank, w.shape[1])) * (alpha / rank);
        _w[module + ".weight"] = w + delta;
        return this;
    }

    /// <summary>RoBERTa's <c>classifier.dense</c> or DistilBERT's <c>pre_classifier</c> [hidden, hidden].</summary>
    public PeftReference WithHeadLayer(float[] weight, float[] bias)
    {
        _dense = tensor(weight).reshape(bias.Length, -1);
        _denseBias = tensor(bias);
        return this;
    }

    /// <summary>Softmax of the logits for one row of token ids (no padding).</summary>
    public float[] Probabilities(int[] ids)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var input = tensor(ids.Select(i => (long)i).ToArray());
        var x = _w["embeddings.word_embeddings.weight"].index_select(0, input);               // [L, H]
        long first = _prefix is null ? 0 : _tokens;                                            // past_key_values_length
        if (_prompt is not null) x = cat([_prompt, x], 0);                                     // inputs_embeds
        if (_config.Architecture == EncoderArchitecture.Roberta) first += _config.PadTokenId + 1;
        var positions = arange(first, first + x.shape[0], dtype: ScalarType.Int64);
        x = x + _w["embeddings.position_embeddings.weight"].index_select(0, positions);
        if (_w.TryGetValue("embeddings.token_type_embeddings.weight", out var types)) x = x + types[0];
        x = Norm(x, "embeddings.LayerNorm");
        for (int l = 0; l < _config.NumHiddenLayers; l++) x = Layer(l, x);
        Tensor pooled = x[0];
        if (_config.Architecture == EncoderArchitecture.Bert) pooled = Linear(pooled, "pooler.dense").tanh();
        else if (_config.Architecture == EncoderArchitecture.Roberta)
            pooled = nn.functional.linear(pooled, _dense!, _denseBias!).tanh();
        else pooled = nn.functional.relu(nn.functional.linear(pooled, _dense!, _denseBias!));
        return nn.functional.linear(pooled, _classifier, _bias).softmax(0).data<float>().ToArray();
    }

    private Tensor Layer(int l, Tensor x)
    {
        string p = $"encoder.layer.{l}.";
        int heads = _config.NumAttentionHeads;
        long seq = x.shape[0], hidden = x.shape[1], size = hidden / heads;
        Tensor Heads(Tensor t) => t.reshape(-1, heads, size).transpose(0, 1);                   // [heads, n, size]
        var q = Heads(Linear(x, p + "attention.self.query"));
        var k = Heads(Linear(x, p + "attention.self.key"));
        var v = Heads(Linear(x, p + "attention.self.value"));
        if (_prefix is not null)
        {
            // view(P, layers·2, heads, size).permute(1, 2, 0, 3): [layers·2, heads, P, size].
            var past = _prefix.reshape(_tokens, _config.NumHiddenLayers * 2, heads, size).permute(1, 2, 0, 3);
            k = cat([past[2 * l], k], 1);
            v = cat([past[2 * l + 1], v], 1);
        }
        var attention = (q.matmul(k.transpose(1, 2)) / Math.Sqrt(size)).softmax(-1);
        var context = attention.matmul(v).transpose(0, 1).reshape(seq, hidden);
        var attended = Norm(Linear(context, p + "attention.output.dense") + x, p + "attention.output.LayerNorm");
        var inner = nn.functional.gelu(Linear(attended, p + "intermediate.dense"));
        return Norm(Linear(inner, p + "output.dense") + attended, p + "output.LayerNorm");
    }

    private Tensor Linear(Tensor x, string module) =>
        nn.functional.linear(x, _w[module + ".weight"], _w[module + ".bias"]);

    private Tensor Norm(Tensor x, string module) =>
        nn.functional.layer_norm(x, [x.shape[^1]], _w[module + ".weight"], _w[module + ".bias"], _config.LayerNormEps);
}
