using Microsoft.ML.Peft.Methods.Lora;
using Microsoft.ML.Peft.Modeling;
using TorchSharp.Modules;

namespace Microsoft.ML.Peft.Methods.QLora;

/// <summary>
/// QLoRA (Dettmers et al., 2023 style): every linear layer of <c>bert.encoder</c> is stored quantized — 4-bit NF4 codes
/// packed two per byte with one float32 absmax per <see cref="BlockSize"/> weights (≈ 4.5 bits per weight at block 64),
/// or absmax int8 with <see cref="Bits"/> = 8 — and dequantized to float32 on the fly in each forward; float32 LoRA
/// pairs train on top of the targeted layers. Embeddings, LayerNorms, biases, the pooler and the head stay float32.
/// The quantized codes are neither trained nor saved: loading re-quantizes the base deterministically. Double
/// quantization (quantizing the absmax scales too) is not implemented: at these encoder sizes it would save about 0.4 bit per weight.
/// Trainable parameters: LoRA's, <c>r · (in + out)</c> per targeted layer; MiniLM-L6 with r = 8 on query and value: 73,728
/// (plus the head). The model's parameter total no longer includes the quantized encoder weights (they are buffers).
/// Not mergeable: a float update cannot be folded into 4-bit codes, so scoring runs dequantize + LoRA.
/// </summary>
public sealed class QLoraConfig : PeftMethodConfig
{
    /// <inheritdoc/>
    public override string MethodName => "qlora";

    /// <summary>2e-3, as LoRA: the same low-rank update, whose default was measured on SST-2 with the embedded MiniLM.</summary>
    public override double DefaultLearningRate => 2e-3;

    /// <summary>Rank r of the update. Default 8.</summary>
    public int Rank { get; set; } = 8;

    /// <summary>Scaling numerator alpha; the update is multiplied by alpha / r (or alpha / √r with <see cref="UseRsLora"/>). Default 16.</summary>
    public double Alpha { get; set; } = 16;

    /// <summary>Dropout on the LoRA branch's input during training. Default 0.1.</summary>
    public double Dropout { get; set; } = 0.1;

    /// <summary>Hugging Face module names that get LoRA (same rules as <see cref="LoraConfig.TargetModules"/>). Default <c>query</c>, <c>value</c>.</summary>
    public string[] TargetModules { get; set; } = ["query", "value"];

    /// <summary>A regular expression that must match a module's whole path; when set it replaces <see cref="TargetModules"/>. Default null.</summary>
    public string? TargetModulesPattern { get; set; }

    /// <summary>Rank-stabilised scaling alpha / √r instead of alpha / r. Default false.</summary>
    public bool UseRsLora { get; set; }

    /// <summary>Bits per frozen weight: 4 (NF4) or 8 (absmax int8). Default 4.</summary>
    public int Bits { get; set; } = 4;

    /// <summary>Weights per absmax block (must be even, so two 4-bit codes always share a byte). Default 64, as QLoRA.</summary>
    public int BlockSize { get; set; } = 64;

    private LoraConfig AsLora() => new()
    {
        Rank = Rank, Alpha = Alpha, Dropout = Dropout, TargetModules = TargetModules, TargetModulesPattern = TargetModulesPattern, UseRsLora = UseRsLora,
    };

    /// <inheritdoc/>
    public override void Validate()
    {
        AsLora().Validate();
        Require(Bits is 4 or 8, nameof(Bits), $"must be 4 (NF4) or 8 (int8), got {Bits}.");
        Require(BlockSize >= 2 && BlockSize % 2 == 0, nameof(BlockSize), $"must be an even number of at least 2, got {BlockSize}.");
    }

    internal override void Attach(PeftModel model)
    {
        var lora = AsLora();
        var targets = lora.ResolveTargets(model).ToHashSet(StringComparer.Ordinal);
        var encoderLinears = ModuleSurgery.NamedModules(model)
            .Where(m => m.Module is Linear && m.Path.StartsWith("bert.encoder.", StringComparison.Ordinal))
            .Select(m => (m.Path, Linear: (Linear)m.Module))
            .ToList();
        foreach (var (path, linear) in encoderLinears)
        {
            var quantized = new QuantizedLinear(linear, Bits, BlockSize);
            ModuleSurgery.Replace(model, path, targets.Contains(path) ? new QLoraLinear(quantized, Rank, lora.Scaling, Dropout) : quantized);
            linear.Dispose(); // the float32 weight is what quantization saves
        }
    }

    internal override bool IsTrainable(string name) =>
        name.Contains(".lora_A.", StringComparison.Ordinal) || name.Contains(".lora_B.", StringComparison.Ordinal);
}
