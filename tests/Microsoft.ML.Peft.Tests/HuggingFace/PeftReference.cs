using Microsoft.ML.Peft.BaseModels;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Tests.HuggingFace;

/// <summary>
/// What Python computes for one row when peft's <c>PeftModelForSequenceClassification</c> wraps transformers'
/// <c>BertForSequenceClassification</c> with a prompt-learning adapter, in eval mode, written from their sources with
/// plain tensor operations on the base's weights (the library's encoder modules are not used):
/// <list type="bullet">
/// <item>PROMPT_TUNING (peft_model.py, forward): <c>inputs_embeds = cat(prompts, word_embeddings(input_ids))</c>, the
/// mask extended with ones, <c>token_type_ids</c> extended with zeros; BertEmbeddings then adds positions
/// 0..P+L−1 and applies LayerNorm; the pooler reads position 0, the first virtual token.</item>
/// <item>PREFIX_TUNING (_prefix_tuning_forward, get_prompt): <c>prompt_embeddings</c> viewed as
/// [P, layers·2, heads, head size] and permuted so that layer l's keys are slice 2l and its values 2l+1; each layer's
/// attention concatenates them before its own keys and values; BertEmbeddings counts the text's positions from
/// <c>past_key_values_length</c> = P; the pooler reads [CLS].</item>
/// </list>
/// </summary>
internal sealed class PeftReference
{
    private readonly Dictionary<string, Tensor> _w;
    private readonly int _layers, _heads, _tokens;
    private readonly bool _prefix;
    private readonly Tensor _prompt, _classifier, _bias;
    private readonly double _eps;

    public PeftReference(BaseModel baseModel, string peftType, int tokens, float[] prompt, float[] weight,
        float[] bias)
    {
        var encoder = baseModel.CreateEncoder(withPooler: true);
        _w = encoder.named_parameters().ToDictionary(p => p.name, p => (Tensor)p.parameter.detach());
        _layers = baseModel.Config.NumHiddenLayers;
        _heads = baseModel.Config.NumAttentionHeads;
        _eps = baseModel.Config.LayerNormEps;
        _tokens = tokens;
        _prefix = peftType == "PREFIX_TUNING";
        _prompt = tensor(prompt).reshape(tokens, -1);
        _classifier = tensor(weight).reshape(2, -1);
        _bias = tensor(bias);
    }

    /// <summary>Softmax of the logits for one row of token ids (no padding).</summary>
    public float[] Probabilities(int[] ids)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var input = tensor(ids.Select(i => (long)i).ToArray());
        long length = ids.Length;
        var x = _w["embeddings.word_embeddings.weight"].index_select(0, input);               // [L, H]
        long first = 0;
        if (_prefix) first = _tokens;                                                          // past_key_values_length
        else x = cat([_prompt, x], 0);                                                         // inputs_embeds
        long total = x.shape[0];
        var positions = arange(first, first + total, dtype: ScalarType.Int64);
        x = x + _w["embeddings.position_embeddings.weight"].index_select(0, positions)
            + _w["embeddings.token_type_embeddings.weight"][0];                                  // all types 0
        x = Norm(x, "embeddings.LayerNorm");
        for (int l = 0; l < _layers; l++) x = Layer(l, x);
        var pooled = Linear(x[0], "pooler.dense").tanh();
        var logits = nn.functional.linear(pooled, _classifier, _bias);
        return logits.softmax(0).data<float>().ToArray();
    }

    private Tensor Layer(int l, Tensor x)
    {
        string p = $"encoder.layer.{l}.";
        long seq = x.shape[0], hidden = x.shape[1], size = hidden / _heads;
        Tensor Heads(Tensor t) => t.reshape(-1, _heads, size).transpose(0, 1);                  // [heads, n, size]
        var q = Heads(Linear(x, p + "attention.self.query"));
        var k = Heads(Linear(x, p + "attention.self.key"));
        var v = Heads(Linear(x, p + "attention.self.value"));
        if (_prefix)
        {
            // view(P, layers·2, heads, size).permute(1, 2, 0, 3): [layers·2, heads, P, size].
            var past = _prompt.reshape(_tokens, _layers * 2, _heads, size).permute(1, 2, 0, 3);
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
        nn.functional.layer_norm(x, [x.shape[^1]], _w[module + ".weight"], _w[module + ".bias"], _eps);
}
