using System.Text.Json.Nodes;
using Microsoft.ML.Peft.HuggingFace;
using Microsoft.ML.Peft.Modeling;
using Microsoft.ML.Peft.Onnx;

namespace Microsoft.ML.Peft.Methods.Prompt;

/// <summary>
/// Prompt tuning (with <see cref="PromptTuningConfig.PeftLayout"/>) as <c>peft</c>'s <c>PROMPT_TUNING</c> adapter: the
/// keys of <c>PromptTuningConfig</c> (peft/tuners/prompt_tuning/config.py) and one tensor, <c>prompt_embeddings</c>
/// [P, hidden], the virtual tokens as peft's <c>PromptEmbedding</c> holds them (rows joined to the word embeddings).
/// </summary>
internal sealed class PromptPeftMapping(PromptTuningConfig config) : PeftAdapterMapping
{
    private const string Table = PromptOnnxExport.Table;

    public override string PeftType => "PROMPT_TUNING";

    public override bool IsPromptLearning => true;

    public override void WriteConfig(JsonObject o, EncoderConfig encoder)
    {
        PromptLearning.WriteConfig(o, config.NumVirtualTokens, encoder);
        // The init only matters when training starts. peft's TEXT would make PromptEmbedding load the tokenizer named
        // by tokenizer_name_or_path when the adapter is loaded for training, which a local base path may not resolve
        // to, so every init is written as RANDOM: the trained prompt is the tensor, whatever it started from.
        o["prompt_tuning_init"] = "RANDOM";
        o["prompt_tuning_init_text"] = null;
        o["tokenizer_name_or_path"] = null;
        o["tokenizer_kwargs"] = null;
    }

    public override string FromPeftName(string peftName) =>
        peftName == PeftFormat.PromptEmbeddings ? Table : peftName;

    public override string FileName(string name) =>
        name == Table ? PeftFormat.PromptEmbeddings : base.FileName(name);

    /// <summary>
    /// The method a <c>PROMPT_TUNING</c> adapter describes: P from <c>num_virtual_tokens</c> (the rows of
    /// <c>prompt_embeddings</c>), peft's layout. The init is irrelevant for a trained prompt and is not read.
    /// </summary>
    internal static PromptTuningConfig Read(AdapterConfigJson c, IReadOnlyDictionary<string, FloatTensor> tensors) =>
        new() { NumVirtualTokens = PromptLearning.ReadTokens(c, tensors), PeftLayout = true };
}
