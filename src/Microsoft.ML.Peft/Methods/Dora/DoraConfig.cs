using Microsoft.ML.Peft.Methods.Lora;
using Microsoft.ML.Peft.Modeling;
using TorchSharp.Modules;

namespace Microsoft.ML.Peft.Methods.Dora;

/// <summary>
/// DoRA (Liu et al., 2024; <c>peft</c>'s <c>use_dora</c>): each targeted linear layer uses the weight
/// <c>m · (W + s·B·A) / ‖W + s·B·A‖_c</c>, a LoRA update (s = alpha / r) whose direction is renormalised per
/// output row and rescaled by a trainable magnitude vector <c>lora_magnitude_vector</c> (m, initialised to ‖W‖_c so
/// the untrained model equals the base). ‖·‖_c is the L2 norm over the input dimension for each output row of the
/// [out, in] weight, detached from the gradient as the paper (section 4.3) and <c>peft</c> do.
/// Trainable parameters per targeted layer: <c>r · (in + out) + out</c> (LoRA's plus the magnitude);
/// MiniLM-L6 with r = 8 on query and value: 73,728 + 6 · 2 · 384 = 78,336 (plus the head).
/// Mergeable: the merged weight is <c>m / ‖W + ΔW‖_c · (W + ΔW)</c>; unmerging restores a kept copy of W
/// exactly.
/// </summary>
public sealed class DoraConfig : LowRankConfigBase
{
    /// <inheritdoc/>
    public override string MethodName => "dora";

    internal override void Attach(PeftModel model)
    {
        foreach (var path in ResolveTargets(model))
        {
            var linear = (Linear)ModuleSurgery.Get(model, path);
            ModuleSurgery.Replace(model, path, new DoraLinear(linear, Rank, Scaling, Dropout));
        }
    }

    internal override Onnx.OnnxMethodExport CreateOnnxExport() => new DoraOnnxExport(Scaling);

    internal override HuggingFace.PeftAdapterMapping CreatePeftAdapterMapping() => new Lora.LoraPeftMapping(this);

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
