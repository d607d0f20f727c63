using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using Microsoft.ML.Peft.Modeling;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Methods;

/// <summary>
/// Options of one parameter-efficient fine-tuning method (the counterpart of <c>peft</c>'s <c>PeftConfig</c>).
/// Each method lives in its own folder with a subclass of this type; the ML.NET stages, training loop and
/// model saving work with any subclass, so a new method touches only its folder and one catalog line.
/// </summary>
public abstract class PeftMethodConfig
{
    /// <summary>Short, stable name stored in saved models (e.g. <c>lora</c>).</summary>
    [JsonIgnore]
    public abstract string MethodName { get; }

    /// <summary>
    /// Learning rate used when the stage's options leave it unset: 5e-4 suits methods that train few weights.
    /// </summary>
    [JsonIgnore]
    public virtual double DefaultLearningRate => 5e-4;

    /// <summary>
    /// Throws <see cref="ArgumentException"/> naming the option at fault when a value is out of range.
    /// </summary>
    public abstract void Validate();

    /// <summary>
    /// Modifies <paramref name="model"/> in place (swapping or wrapping its modules) so that it carries this
    /// method's trainable parameters, initialised so the output starts equal to the base model's where the method
    /// promises that.
    /// </summary>
    internal abstract void Attach(PeftModel model);

    /// <summary>
    /// True when the named parameter (a full path in <see cref="PeftModel"/>) trains under this method.
    /// </summary>
    internal abstract bool IsTrainable(string parameterName);

    /// <summary>
    /// What this method adds to an exported ONNX graph. The default takes nothing beyond the trained tensors that are
    /// plain weights (the head, biases, LayerNorms, whole matrices); methods with their own tensors override it in
    /// their folder.
    /// </summary>
    internal virtual Onnx.OnnxMethodExport CreateOnnxExport() => new();

    /// <summary>
    /// How <c>SavePretrained</c> writes this method as a Hugging Face <c>peft</c> adapter. The default refuses: the
    /// method has no <c>peft</c> counterpart. Methods that have one override it in their folder.
    /// </summary>
    /// <exception cref="NotSupportedException">The method has no <c>peft</c> counterpart.</exception>
    internal virtual HuggingFace.PeftAdapterMapping CreatePeftAdapterMapping() =>
        throw new NotSupportedException(
            $"Method '{MethodName}' has no counterpart in Hugging Face peft, so it cannot be saved as a peft adapter. "
            + "A stage whose method merged into the encoder (IsMerged) can still be saved for transformers with "
            + "SaveMergedPretrained. See docs/huggingface.md.");

    /// <summary>
    /// True when nothing in the encoder trains (the linear probe): with <c>Pooling</c> Auto on a sentence-embedding
    /// base the stage then pools by mean, as the base was trained to be read, instead of through its untrained pooler.
    /// </summary>
    internal virtual bool FreezesEncoder => false;

    /// <summary>
    /// Positions of the encoder the method takes from the text (peft-layout prefix and prompt tuning), so the stage
    /// keeps texts to the encoder's positions minus these. Default 0.
    /// </summary>
    internal virtual int ReservedPositions => 0;

    /// <summary>The positions left for the text on an encoder shaped by <paramref name="encoder"/>.</summary>
    internal int TextPositions(Modeling.EncoderConfig encoder) => encoder.MaxSequenceLength - ReservedPositions;

    /// <summary>
    /// Folds the method's update into the base weights for faster inference; false when the method cannot merge.
    /// </summary>
    internal virtual bool Merge(PeftModel model) => false;

    /// <summary>Reverses <see cref="Merge"/>.</summary>
    internal virtual void Unmerge(PeftModel model) { }

    /// <summary>
    /// Hook for methods that adapt during training (e.g. rank reallocation); called after each optimizer step.
    /// </summary>
    internal virtual void OnStepEnd(PeftModel model, int step, int totalSteps) { }

    /// <summary>
    /// The step from which the trained weights have the method's final form, for <paramref name="totalSteps"/> planned
    /// steps: an epoch that ends earlier is neither kept as the best nor counts toward early stopping (AdaLoRA's budget
    /// must reach its target first). Default 0: every epoch counts.
    /// </summary>
    internal virtual int FinalFormStep(int totalSteps) => 0;

    /// <summary>
    /// Called once before the first step, with a probe that can run forward/backward passes over training batches
    /// (e.g. to estimate Fisher information for Child-Tuning). Gradients it leaves behind are cleared by the trainer.
    /// </summary>
    internal virtual void OnTrainingStart(PeftModel model, ITrainingProbe probe) { }

    /// <summary>
    /// Called after <c>backward()</c> and before clipping and the optimizer step (e.g. to mask gradients).
    /// </summary>
    internal virtual void OnAfterBackward(PeftModel model) { }

    /// <summary>
    /// An extra term added to the task loss (e.g. AdaLoRA's orthogonality regulariser); null for none.
    /// </summary>
    internal virtual Tensor? ExtraLoss(PeftModel model) => null;

    /// <summary>
    /// Turns the trained structure into its inference form (e.g. folds a prefix MLP into plain prefixes). Called after
    /// training and, on load, right after <see cref="Attach"/> so the saved tensors find the same names.
    /// </summary>
    internal virtual void PrepareForInference(PeftModel model) { }

    /// <summary>A deep copy, so training never writes into the user's options.</summary>
    public PeftMethodConfig Clone() => FromJson(ToJson());

    /// <summary>Serializes the method name and options.</summary>
    public string ToJson()
    {
        var node = new JsonObject
        {
            ["method"] = MethodName,
            ["options"] = JsonSerializer.SerializeToNode(this, GetType(), JsonOptions),
        };
        return node.ToJsonString();
    }

    /// <summary>
    /// Reads options written by <see cref="ToJson"/>; the method is found by name among this library's methods.
    /// </summary>
    public static PeftMethodConfig FromJson(string json)
    {
        var node = JsonNode.Parse(json)!.AsObject();
        string name = (string?)node["method"] ?? throw new FormatException("PEFT method options lack a 'method' name.");
        if (!Registry.Value.TryGetValue(name, out var type))
            throw new FormatException(
                $"Unknown PEFT method '{name}'. Known: {string.Join(", ", Registry.Value.Keys.Order())}.");
        return (PeftMethodConfig)(node["options"]!.Deserialize(type, JsonOptions)
            ?? throw new FormatException($"PEFT method '{name}' has no options."));
    }

    /// <summary>Names of every method this library knows.</summary>
    public static IReadOnlyCollection<string> KnownMethods => Registry.Value.Keys;

    internal static readonly JsonSerializerOptions JsonOptions = new()
    {
        Converters = { new JsonStringEnumConverter() },
        WriteIndented = false,
    };

    // Every concrete subclass in this assembly registers itself by its MethodName, so adding a method needs no
    // list edit.
    private static readonly Lazy<Dictionary<string, Type>> Registry = new(() =>
        typeof(PeftMethodConfig).Assembly.GetTypes()
            .Where(t => t.IsSubclassOf(typeof(PeftMethodConfig)) && !t.IsAbstract
                && t.GetConstructor(Type.EmptyTypes) is not null)
            .ToDictionary(t => ((PeftMethodConfig)Activator.CreateInstance(t)!).MethodName, t => t));

    /// <summary>
    /// The target-module options of methods that wrap layers: without a pattern, at least one non-blank name;
    /// with one, a valid regular expression.
    /// </summary>
    protected static void RequireTargets(string[]? targetModules, string? targetModulesPattern)
    {
        if (targetModulesPattern is null)
            Require(targetModules is { Length: > 0 } && targetModules.All(t => !string.IsNullOrWhiteSpace(t)),
                "TargetModules", "must name at least one module.");
        else
        {
            try { _ = new System.Text.RegularExpressions.Regex(targetModulesPattern); }
            catch (ArgumentException e)
            {
                Require(false, "TargetModulesPattern", $"is not a valid regular expression: {e.Message}");
            }
        }
    }

    /// <summary>Helper for validation messages.</summary>
    protected static void Require(bool ok, string option, string message)
    {
        if (!ok) throw new ArgumentOutOfRangeException(option, $"Option '{option}' {message}");
    }
}

/// <summary>Lets a method look at the training data through the model before training starts.</summary>
internal interface ITrainingProbe
{
    /// <summary>Runs forward and backward over up to <paramref name="maxBatches"/> training batches, accumulating
    /// gradients into every parameter with <c>requires_grad</c>; returns the number of batches run.</summary>
    int AccumulateGradients(int maxBatches);
}
