using Microsoft.ML.Peft.Methods;
using Microsoft.ML.Peft.Methods.AdaLora;
using Microsoft.ML.Peft.Methods.IA3;
using Microsoft.ML.Peft.Methods.Lora;
using Microsoft.ML.Peft.Methods.Prefix;
using Microsoft.ML.Peft.Methods.Prompt;
using Microsoft.ML.Peft.Onnx;

namespace Microsoft.ML.Peft.HuggingFace;

/// <summary>
/// The <c>peft_type</c> values (peft/utils/peft_types.py) this library reads, each with the method-folder reader that
/// turns its <c>adapter_config.json</c> into options, and the types it knows but refuses, with the reason.
/// </summary>
internal static class PeftAdapterTypes
{
    private delegate PeftMethodConfig Reader(AdapterConfigJson config,
        IReadOnlyDictionary<string, FloatTensor> tensors);

    private static readonly Dictionary<string, Reader> Readers = new(StringComparer.Ordinal)
    {
        ["LORA"] = (c, _) => LoraPeftMapping.Read(c),
        ["ADALORA"] = (c, _) => AdaLoraPeftMapping.Read(c),
        ["IA3"] = IA3PeftMapping.Read,
        ["PREFIX_TUNING"] = PrefixPeftMapping.Read,
        ["PROMPT_TUNING"] = PromptPeftMapping.Read,
    };

    /// <summary>
    /// The prompt-learning types, whose files keep the head under <see cref="PeftFormat.PromptLearningPrefix"/> and
    /// their tensor as <see cref="PeftFormat.PromptEmbeddings"/>.
    /// </summary>
    public static bool IsPromptLearning(string peftType) => peftType is "PREFIX_TUNING" or "PROMPT_TUNING";

    private static readonly Dictionary<string, string> Refused = new(StringComparer.Ordinal)
    {
        ["P_TUNING"] = "this library has no P-tuning (prompt encoder)",
        ["MULTITASK_PROMPT_TUNING"] = "this library has no multitask prompt tuning",
    };

    /// <summary>The options an adapter of <paramref name="peftType"/> describes.</summary>
    public static PeftMethodConfig Read(string peftType, AdapterConfigJson config,
        IReadOnlyDictionary<string, FloatTensor> tensors)
    {
        if (Readers.TryGetValue(peftType, out var read)) return read(config, tensors);
        if (Refused.TryGetValue(peftType, out var reason))
            throw new NotSupportedException($"{config.File}: peft_type '{peftType}' is not imported: {reason}. "
                + "See docs/huggingface.md.");
        throw config.Error("peft_type", $"is '{peftType}', which this library cannot import. Supported: "
            + $"{string.Join(", ", Readers.Keys)}.");
    }
}
