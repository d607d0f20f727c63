using System.Text.Json.Nodes;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Peft.Modeling;
using Microsoft.ML.Peft.Onnx;

namespace Microsoft.ML.Peft.HuggingFace;

/// <summary>
/// The keys every <c>peft</c> prompt-learning adapter shares (<c>PromptLearningConfig</c>, peft/config.py), written and
/// read for prefix and prompt tuning alike.
/// </summary>
internal static class PromptLearning
{
    /// <summary>The shared keys for <paramref name="tokens"/> virtual tokens on a model shaped by
    /// <paramref name="encoder"/>.</summary>
    public static void WriteConfig(JsonObject o, int tokens, EncoderConfig encoder)
    {
        o["num_virtual_tokens"] = tokens;
        o["token_dim"] = encoder.HiddenSize;
        o["num_transformer_submodules"] = 1; // an encoder-only model
        o["num_attention_heads"] = encoder.NumAttentionHeads;
        o["num_layers"] = encoder.NumHiddenLayers;
    }

    /// <summary>
    /// <c>num_virtual_tokens</c>, checked against the rows of <c>prompt_embeddings</c> (peft multiplies it by
    /// <c>num_transformer_submodules</c>, which is 1 for an encoder).
    /// </summary>
    public static int ReadTokens(AdapterConfigJson c, IReadOnlyDictionary<string, FloatTensor> tensors)
    {
        if (!c.Has("num_virtual_tokens")) throw c.Error("num_virtual_tokens", "is missing.");
        int tokens = c.Int("num_virtual_tokens", 0);
        int submodules = c.Int("num_transformer_submodules", 1);
        if (submodules != 1)
            throw c.Error("num_transformer_submodules", $"is {submodules}; an encoder has 1.");
        if (!tensors.TryGetValue(PeftFormat.PromptEmbeddings, out var t))
            throw new PeftModelFormatException($"{c.File}: the adapter's tensor '{PeftFormat.PromptEmbeddings}' is "
                + "missing.");
        if (t.Shape.Length != 2 || t.Rows != tokens)
            throw new PeftModelFormatException($"{c.File}: key 'num_virtual_tokens' is {tokens}, but tensor "
                + $"'{PeftFormat.PromptEmbeddings}' has shape {t.ShapeText}.");
        return tokens;
    }
}
