using System.Text.Json.Nodes;
using Microsoft.ML.Peft.Methods;
using Microsoft.ML.Peft.Onnx;

namespace Microsoft.ML.Peft.HuggingFace;

/// <summary>
/// How one method's trained state is written as a <c>peft</c> adapter: its <c>peft_type</c>, its keys of
/// <c>adapter_config.json</c> and its tensor names. Made by <see cref="PeftMethodConfig.CreatePeftAdapterMapping"/>,
/// so that the method-specific rules live in the method's folder and the writer never asks which method it has.
/// </summary>
internal abstract class PeftAdapterMapping
{
    /// <summary><c>peft</c>'s <c>PeftType</c> value (peft/utils/peft_types.py), e.g. <c>LORA</c>.</summary>
    public abstract string PeftType { get; }

    /// <summary>
    /// True for methods whose trained state is the whole model (full fine-tuning): they go out as a plain
    /// <c>transformers</c> folder, not as an adapter.
    /// </summary>
    public virtual bool IsWholeModel => false;

    /// <summary>
    /// True for <c>peft</c>'s prompt-learning types (<c>PREFIX_TUNING</c>, <c>PROMPT_TUNING</c>): the transformers
    /// model is <c>PeftModel.base_model</c> itself, so the head is saved under
    /// <see cref="PeftFormat.PromptLearningPrefix"/>, and the method's one tensor as
    /// <see cref="PeftFormat.PromptEmbeddings"/> at the top level
    /// (<c>get_peft_model_state_dict</c>, peft/utils/save_and_load.py).
    /// </summary>
    public virtual bool IsPromptLearning => false;

    /// <summary>The prefix of the model's own tensors (the head) in the adapter file.</summary>
    private string ModelPrefix => IsPromptLearning ? PeftFormat.PromptLearningPrefix : PeftFormat.TensorPrefix;

    /// <summary>
    /// Adds the method's own keys (<c>r</c>, <c>target_modules</c>, ...) to <paramref name="config"/> for a model
    /// shaped by <paramref name="encoder"/>; called after <see cref="ToPeft"/>.
    /// </summary>
    public abstract void WriteConfig(JsonObject config, Modeling.EncoderConfig encoder);

    /// <summary>
    /// The adapter tensors in <c>peft</c>'s names (without <see cref="PeftFormat.TensorPrefix"/>), from the stage's
    /// trained tensors other than the head. Default: the same names, since this library's modules are named as
    /// <c>peft</c>'s.
    /// </summary>
    public virtual IEnumerable<KeyValuePair<string, FloatTensor>> ToPeft(
        IEnumerable<KeyValuePair<string, FloatTensor>> trained) => trained;

    /// <summary>The library's name of a tensor read under <paramref name="peftName"/> (prefix removed).</summary>
    public virtual string FromPeftName(string peftName) => peftName;

    /// <summary>The name in the adapter file, prefix included, of <paramref name="name"/> (a name
    /// <see cref="ToPeft"/> gives, or the head's): what the writer writes and messages show.</summary>
    public virtual string FileName(string name) => ModelPrefix + name;
}

/// <summary>Full fine-tuning: no adapter; <c>SavePretrained</c> writes the whole model for <c>transformers</c>.
/// </summary>
internal sealed class WholeModelMapping : PeftAdapterMapping
{
    public static readonly WholeModelMapping Instance = new();

    public override string PeftType => "";

    public override bool IsWholeModel => true;

    public override void WriteConfig(JsonObject config, Modeling.EncoderConfig encoder) { }
}
