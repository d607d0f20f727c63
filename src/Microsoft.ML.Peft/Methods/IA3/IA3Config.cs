using Microsoft.ML.Peft.Modeling;
using TorchSharp.Modules;

namespace Microsoft.ML.Peft.Methods.IA3;

/// <summary>
/// (IA)³ (Liu et al., 2022; <c>peft</c>'s <c>IA3Config</c>): learned vectors rescale, per channel, the attention keys
/// and values (the outputs of the <c>key</c> and <c>value</c> projections) and the feed-forward block's inner
/// activations (the input of the FFN's <c>output.dense</c>, which is exactly the activation function's output). The
/// vectors start at ones, so the untrained model equals the base model; they fold into the weights for scoring
/// (<see cref="Merge"/>).
/// Trainable parameters: the output width of each targeted non-feed-forward layer plus the input width of each
/// feed-forward one; with the defaults, for L layers of width H and feed-forward width F, <c>L · (2H + F)</c>.
/// For MiniLM-L6 (L 6, H 384, F 1536): 6 × (384 + 384 + 1536) = 13,824.
/// </summary>
/// <remarks>
/// The vectors live on wrappers of the targeted linear layers, named as <c>peft</c>'s (<c>...key.ia3_l</c> [H, 1],
/// <c>...output.dense.ia3_l</c> [1, F]). Scaling the input of <c>output.dense</c> is the paper's placement: BERT
/// applies nothing between the activation and that projection, so it is the same as scaling the activation itself, and
/// it merges into the projection's weight columns. Unlike <c>peft</c>'s suffix matching, <c>output.dense</c> here means
/// only the feed-forward output projection (<c>encoder.layer.N.output.dense</c>), not <c>attention.output.dense</c>,
/// which <c>peft</c>'s BERT default also catches (H more entries per layer); name <c>attention.output.dense</c> to
/// target it.
/// </remarks>
public sealed class IA3Config : PeftMethodConfig
{
    /// <inheritdoc/>
    public override string MethodName => "ia3";

    /// <summary>
    /// 3e-2. The vectors multiply activations around 1, and there are very few of them; the paper trains them with 3e-3
    /// (T0-3B, Adafactor, thousands of steps). Measured on 3,000 SST-2 rows at the stage's plan (320 AdamW steps):
    /// 3e-3 0.792, 1e-2 0.815, 3e-2 0.843.
    /// </summary>
    public override double DefaultLearningRate => 3e-2;

    /// <summary>
    /// Linear layers to wrap, matched against the end of each module's path as in
    /// <see cref="Lora.LowRankConfigBase.TargetModules"/> (DistilBERT names accepted), except that <c>output.dense</c>
    /// means only the feed-forward output projection.
    /// Default <c>key</c>, <c>value</c>, <c>output.dense</c>.
    /// </summary>
    public string[] TargetModules { get; set; } = ["key", "value", "output.dense"];

    /// <summary>
    /// Which of <see cref="TargetModules"/> are feed-forward: their vector scales the layer's input (per input channel)
    /// instead of its output. Must be a subset of <see cref="TargetModules"/>; may be empty. Default
    /// <c>output.dense</c>.
    /// </summary>
    public string[] FeedforwardModules { get; set; } = ["output.dense"];

    /// <inheritdoc/>
    public override void Validate()
    {
        Require(TargetModules is { Length: > 0 } && TargetModules.All(t => !string.IsNullOrWhiteSpace(t)),
            nameof(TargetModules), "must name at least one module.");
        Require(FeedforwardModules is not null && FeedforwardModules.All(t => !string.IsNullOrWhiteSpace(t)),
            nameof(FeedforwardModules), "must not be null or hold blank names.");
    }

    /// <summary>
    /// The paths (inside <see cref="PeftModel"/>) of the layers to wrap, each with whether it is feed-forward.
    /// </summary>
    internal IReadOnlyList<(string Path, bool Feedforward)> ResolveTargets(PeftModel model)
    {
        var targets = Resolve(model, TargetModules, nameof(TargetModules));
        var feedforward = Resolve(model, FeedforwardModules, nameof(FeedforwardModules))
            .ToHashSet(StringComparer.Ordinal);
        var outside = feedforward.Where(p => !targets.Contains(p)).ToList();
        if (outside.Count > 0)
            throw new ArgumentException(
                "Option 'FeedforwardModules' must be a subset of 'TargetModules'; " +
                $"these layers are not targeted: {string.Join(", ", outside.Take(3))}.");
        return targets.Select(p => (p, feedforward.Contains(p))).ToList();
    }

    private static List<string> Resolve(PeftModel model, string[] names, string option)
    {
        var paths = new List<string>();
        foreach (var name in names)
        {
            var resolved = TargetResolver.Resolve(model, [name], null, option);
            // "output.dense" is the FFN's output projection in Hugging Face's BERT naming; a plain suffix match would
            // also catch attention.output.dense.
            string canonical = CheckpointNames.DistilBertModuleAliases.TryGetValue(name, out var alias) ? alias : name;
            if (canonical == "output.dense")
                resolved = resolved
                    .Where(p => !p.EndsWith(".attention.output.dense", StringComparison.Ordinal))
                    .ToList();
            foreach (var p in resolved) if (!paths.Contains(p)) paths.Add(p);
        }
        return paths;
    }

    internal override void Attach(PeftModel model)
    {
        foreach (var (path, feedforward) in ResolveTargets(model))
            ModuleSurgery.Replace(model, path, new IA3Linear((Linear)ModuleSurgery.Get(model, path), feedforward));
    }

    internal override bool IsTrainable(string name) => name.EndsWith(".ia3_l", StringComparison.Ordinal);

    /// <summary>Folds the vectors into the exported weights, as <see cref="Merge"/> does for scoring.</summary>
    internal override Onnx.OnnxMethodExport CreateOnnxExport() => new IA3OnnxExport();

    internal override HuggingFace.PeftAdapterMapping CreatePeftAdapterMapping() => new IA3PeftMapping();

    /// <summary>
    /// Folds every vector into its layer; refuses (false, nothing changed) when a vector holds a zero, which could not
    /// be divided out again.
    /// </summary>
    internal override bool Merge(PeftModel model)
    {
        var layers = ModuleSurgery.NamedModules(model).Select(m => m.Module).OfType<IA3Linear>().ToList();
        if (layers.Any(l => !l.Merged && l.HasZero())) return false;
        foreach (var l in layers) l.Merge();
        return true;
    }

    internal override void Unmerge(PeftModel model)
    {
        foreach (var l in ModuleSurgery.NamedModules(model).Select(m => m.Module).OfType<IA3Linear>()) l.Unmerge();
    }
}
