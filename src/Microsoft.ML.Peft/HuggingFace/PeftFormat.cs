using Microsoft.ML.Peft.BaseModels;

namespace Microsoft.ML.Peft.HuggingFace;

/// <summary>
/// File names, key prefixes and base-model ids of the Hugging Face <c>peft</c> and <c>transformers</c> folder layouts.
/// </summary>
internal static class PeftFormat
{
    /// <summary><c>peft/utils/constants.py</c> CONFIG_NAME.</summary>
    public const string AdapterConfigFile = "adapter_config.json";

    /// <summary><c>peft/utils/constants.py</c> SAFETENSORS_WEIGHTS_NAME.</summary>
    public const string AdapterWeightsFile = "adapter_model.safetensors";

    /// <summary><c>peft/utils/constants.py</c> WEIGHTS_NAME: a pickle, which this library never reads.</summary>
    public const string AdapterPickleFile = "adapter_model.bin";

    /// <summary><c>transformers</c>' CONFIG_NAME.</summary>
    public const string ModelConfigFile = "config.json";

    /// <summary><c>transformers</c>' SAFE_WEIGHTS_NAME.</summary>
    public const string ModelWeightsFile = "model.safetensors";

    /// <summary>
    /// The prefix of every non-prompt tensor in an adapter file: <c>PeftModel.base_model</c> (the tuner) then its
    /// <c>model</c> (the <c>transformers</c> model), as <c>get_peft_model_state_dict</c> leaves the names
    /// (peft/utils/save_and_load.py).
    /// </summary>
    public const string TensorPrefix = "base_model.model.";

    /// <summary>
    /// The prefix of the model's tensors in a prompt-learning adapter file: <c>PeftModel.base_model</c> is the
    /// transformers model itself (no tuner in between), so the head is <c>base_model.classifier.weight</c>.
    /// </summary>
    public const string PromptLearningPrefix = "base_model.";

    /// <summary>
    /// The one tensor of a prompt-learning adapter (<c>get_peft_model_state_dict</c>): the virtual tokens
    /// [P, hidden] (prompt tuning) or every layer's prefix keys and values [P, layers·2·hidden] (prefix tuning).
    /// </summary>
    public const string PromptEmbeddings = "prompt_embeddings";

    /// <summary><c>peft</c>'s <c>TaskType.SEQ_CLS</c> (peft/utils/peft_types.py).</summary>
    public const string SequenceClassification = "SEQ_CLS";

    /// <summary>The head module <c>BertForSequenceClassification</c> has, saved whole via <c>modules_to_save</c>.
    /// </summary>
    public const string HeadModule = "classifier";

    /// <summary>
    /// The Hugging Face Hub id of a base: the embedded packages' models by their Hub names, others by the name the
    /// base was given (a folder's name, or what the caller passed).
    /// </summary>
    public static string HubId(BaseModel baseModel) => HubId(baseModel.Kind, baseModel.Origin, baseModel.Name);

    /// <summary><see cref="HubId(BaseModel)"/> from a saved stage's record of its base.</summary>
    public static string HubId(BaseModelKind kind, string origin, string name) => kind switch
    {
        BaseModelKind.Embedded when origin == "MiniLM" => "sentence-transformers/all-MiniLM-L6-v2",
        BaseModelKind.Embedded when origin == "ArcticXs" => "Snowflake/snowflake-arctic-embed-xs",
        _ => name,
    };

    /// <summary>
    /// True when an adapter's <c>base_model_name_or_path</c> names <paramref name="baseModel"/>: its Hub id, its name,
    /// a path or id ending in its name, or its origin folder.
    /// </summary>
    public static bool NamesBase(string? recorded, BaseModel baseModel)
    {
        if (string.IsNullOrWhiteSpace(recorded)) return true; // peft leaves it null for models built in memory
        string trimmed = recorded.TrimEnd('/', '\\');
        string last = trimmed[(trimmed.LastIndexOfAny(['/', '\\']) + 1)..];
        return string.Equals(trimmed, HubId(baseModel), StringComparison.OrdinalIgnoreCase)
            || string.Equals(last, baseModel.Name, StringComparison.OrdinalIgnoreCase)
            || string.Equals(last, HubId(baseModel).Split('/')[^1], StringComparison.OrdinalIgnoreCase)
            || string.Equals(Path.GetFullPath(trimmed), Path.GetFullPath(baseModel.Origin.Length > 0
                ? baseModel.Origin : "."), StringComparison.Ordinal);
    }
}
