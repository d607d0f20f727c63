using System.Text.RegularExpressions;
using Microsoft.ML.Peft.Modeling;
using TorchSharp.Modules;

namespace Microsoft.ML.Peft.Methods.Lora;

/// <summary>Which biases train alongside LoRA (as <c>peft</c>'s <c>bias</c> option).</summary>
public enum LoraBias
{
    /// <summary>No bias trains.</summary>
    None,
    /// <summary>Every bias in the encoder trains.</summary>
    All,
    /// <summary>Only the biases of layers that carry LoRA train.</summary>
    LoraOnly,
}

/// <summary>
/// LoRA (Hu et al., 2021): each targeted linear layer computes <c>W x + (B A x) · alpha / r</c> with a trainable
/// rank-<c>r</c> pair A (Kaiming-uniform) and B (zeros), so an untrained adapter leaves the base output unchanged.
/// Trainable parameters per targeted layer: <c>r · (in + out)</c>.
/// </summary>
public sealed class LoraConfig : LowRankConfigBase
{
    /// <inheritdoc/>
    public override string MethodName => "lora";

    /// <summary>Which biases train. Default <see cref="LoraBias.None"/>.</summary>
    public LoraBias Bias { get; set; } = LoraBias.None;



    internal override void Attach(PeftModel model)
    {
        foreach (var path in ResolveTargets(model))
        {
            var linear = (Linear)ModuleSurgery.Get(model, path);
            ModuleSurgery.Replace(model, path, new LoraLinear(linear, Rank, Scaling, Dropout));
        }
    }

    internal override Onnx.OnnxMethodExport CreateOnnxExport() => new LoraOnnxExport(Scaling);

    internal override HuggingFace.PeftAdapterMapping CreatePeftAdapterMapping() => new LoraPeftMapping(this);

    internal override bool IsTrainable(string name) =>
        name.Contains(".lora_A.", StringComparison.Ordinal) || name.Contains(".lora_B.", StringComparison.Ordinal)
        || (Bias == LoraBias.All && name.StartsWith("bert.", StringComparison.Ordinal)
            && name.EndsWith(".bias", StringComparison.Ordinal))
        || (Bias == LoraBias.LoraOnly && name.EndsWith(".base_layer.bias", StringComparison.Ordinal));

    internal override bool Merge(PeftModel model)
    {
        foreach (var (_, m) in ModuleSurgery.NamedModules(model)) if (m is LoraLinear l) l.Merge();
        return true;
    }

    internal override void Unmerge(PeftModel model)
    {
        foreach (var (_, m) in ModuleSurgery.NamedModules(model)) if (m is LoraLinear l) l.Unmerge();
    }
}
