using Microsoft.ML.Peft.Methods.Lora;
using Microsoft.ML.Peft.Modeling;
using TorchSharp.Modules;

namespace Microsoft.ML.Peft.Methods.Dora;

/// <summary>
/// DoRA (Liu et al., 2024; <c>peft</c>'s <c>use_dora</c>): each targeted linear layer uses the weight
/// <c>m · (W + s·B·A) / ‖W + s·B·A‖_c</c>, a LoRA update (s = alpha / r) whose direction is renormalised per output row
/// and rescaled by a trainable magnitude vector <c>lora_magnitude_vector</c> (m, initialised to ‖W‖_c so the untrained
/// model equals the base). ‖·‖_c is the L2 norm over the input dimension for each output row of the [out, in] weight,
/// detached from the gradient as the paper (section 4.3) and <c>peft</c> do.
/// Trainable parameters per targeted layer: <c>r · (in + out) + out</c> (LoRA's plus the magnitude);
/// MiniLM-L6 with r = 8 on query and value: 73,728 + 6 · 2 · 384 = 78,336 (plus the head).
/// Mergeable: the merged weight is <c>m / ‖W + ΔW‖_c · (W + ΔW)</c>; unmerging restores a kept copy of W exactly.
/// </summary>
public sealed class DoraConfig : PeftMethodConfig
{
    /// <inheritdoc/>
    public override string MethodName => "dora";

    /// <summary>2e-3, as LoRA: the same low-rank update, whose default was measured on SST-2 with the embedded MiniLM.</summary>
    public override double DefaultLearningRate => 2e-3;

    /// <summary>Rank r of the directional update. Default 8.</summary>
    public int Rank { get; set; } = 8;

    /// <summary>Scaling numerator alpha; the update B·A is multiplied by alpha / r (or alpha / √r with <see cref="UseRsLora"/>). Default 16.</summary>
    public double Alpha { get; set; } = 16;

    /// <summary>Dropout on the adapter branch's input during training (as <c>peft</c>, the DoRA correction term sees the same dropped input). Default 0.1.</summary>
    public double Dropout { get; set; } = 0.1;

    /// <summary>
    /// Hugging Face module names to adapt, matched against the end of each module's path, or <c>all-linear</c>
    /// (same rules as <see cref="LoraConfig.TargetModules"/>). Default <c>query</c>, <c>value</c>.
    /// </summary>
    public string[] TargetModules { get; set; } = ["query", "value"];

    /// <summary>A regular expression that must match a module's whole path; when set it replaces <see cref="TargetModules"/>. Default null.</summary>
    public string? TargetModulesPattern { get; set; }

    /// <summary>Rank-stabilised scaling alpha / √r instead of alpha / r. Default false.</summary>
    public bool UseRsLora { get; set; }

    // DoRA is LoRA plus a magnitude: LoRA's options, validation, scaling and target resolution are reused as they are.
    private LoraConfig AsLora() => new()
    {
        Rank = Rank, Alpha = Alpha, Dropout = Dropout, TargetModules = TargetModules, TargetModulesPattern = TargetModulesPattern, UseRsLora = UseRsLora,
    };

    /// <inheritdoc/>
    public override void Validate() => AsLora().Validate();

    internal override void Attach(PeftModel model)
    {
        var lora = AsLora();
        foreach (var path in lora.ResolveTargets(model))
        {
            var linear = (Linear)ModuleSurgery.Get(model, path);
            ModuleSurgery.Replace(model, path, new DoraLinear(linear, Rank, lora.Scaling, Dropout));
        }
    }

    internal override bool IsTrainable(string name) =>
        name.Contains(".lora_A.", StringComparison.Ordinal) || name.Contains(".lora_B.", StringComparison.Ordinal)
        || name.Contains(".lora_magnitude_vector.", StringComparison.Ordinal);

    internal override bool Merge(PeftModel model)
    {
        foreach (var (_, m) in ModuleSurgery.NamedModules(model)) if (m is DoraLinear d) d.Merge();
        return true;
    }

    internal override void Unmerge(PeftModel model)
    {
        foreach (var (_, m) in ModuleSurgery.NamedModules(model)) if (m is DoraLinear d) d.Unmerge();
    }
}
