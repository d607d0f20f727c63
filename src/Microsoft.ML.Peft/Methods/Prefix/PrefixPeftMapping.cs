using System.Text.Json.Nodes;
using Microsoft.ML.Peft.HuggingFace;
using Microsoft.ML.Peft.Modeling;
using Microsoft.ML.Peft.Onnx;

namespace Microsoft.ML.Peft.Methods.Prefix;

/// <summary>
/// Prefix tuning (with <see cref="PrefixTuningConfig.PeftLayout"/>) as <c>peft</c>'s <c>PREFIX_TUNING</c> adapter: the
/// keys of <c>PrefixTuningConfig</c> (peft/tuners/prefix_tuning/config.py) and one tensor, <c>prompt_embeddings</c>
/// [P, layers·2·hidden], the folded prefixes. Its last axis is laid out layer, key/value, head, head dimension, as
/// peft's <c>get_prompt</c> splits it (view(batch, P, layers·2, heads, head size), permute(2, 0, 3, 1, 4)), which is
/// how <see cref="PrefixEncoder"/> already stores <c>past_key_values</c>: the tensor goes out unchanged.
/// </summary>
internal sealed class PrefixPeftMapping(PrefixTuningConfig config) : PeftAdapterMapping
{
    private const string Prefixes = PrefixEncoder.ChildName + ".past_key_values";

    public override string PeftType => "PREFIX_TUNING";

    public override bool IsPromptLearning => true;

    public override void WriteConfig(JsonObject o, EncoderConfig encoder)
    {
        PromptLearning.WriteConfig(o, config.NumVirtualTokens, encoder);
        // The saved tensor holds the prefixes themselves (the MLP is folded away after training), which is what
        // peft's PrefixEncoder holds without projection.
        o["prefix_projection"] = false;
        o["encoder_hidden_size"] = encoder.HiddenSize;
    }

    public override string FromPeftName(string peftName) =>
        peftName == PeftFormat.PromptEmbeddings ? Prefixes : peftName;

    public override string FileName(string name) =>
        name == Prefixes ? PeftFormat.PromptEmbeddings : base.FileName(name);

    /// <summary>
    /// The method a <c>PREFIX_TUNING</c> adapter describes: P from <c>num_virtual_tokens</c>, which must be the rows of
    /// <c>prompt_embeddings</c>; peft's layout. The tensor's width is checked against the base later, with every
    /// other tensor.
    /// </summary>
    internal static PrefixTuningConfig Read(AdapterConfigJson c, IReadOnlyDictionary<string, FloatTensor> tensors)
    {
        int tokens = PromptLearning.ReadTokens(c, tensors);
        return new PrefixTuningConfig { NumVirtualTokens = tokens, PeftLayout = true };
    }
}
