using Microsoft.ML.Peft.Methods.Lora;
using Microsoft.ML.Peft.Modeling;
using TorchSharp.Modules;

namespace Microsoft.ML.Peft.Methods.QLora;

/// <summary>
/// QLoRA (Dettmers et al., 2023 style): every linear layer of <c>bert.encoder</c> is stored quantized — 4-bit NF4
/// codes packed two per byte with one float32 absmax per <see cref="BlockSize"/> weights (≈ 4.5 bits per weight at
/// block 64), or absmax int8 with <see cref="Bits"/> = 8 — and dequantized to float32 on the fly in each forward;
/// float32 LoRA pairs train on top of the targeted layers. Embeddings, LayerNorms, biases, the pooler and the head stay
/// float32.
/// The quantized codes are neither trained nor saved: loading re-quantizes the base deterministically. Double
/// quantization (quantizing the absmax scales too) is not implemented: at these encoder sizes it would save about 0.4
/// bit per weight.
/// Trainable parameters: LoRA's, <c>r · (in + out)</c> per targeted layer; MiniLM-L6 with r = 8 on query and value:
/// 73,728 (plus the head). The model's parameter total no longer includes the quantized encoder weights (they are
/// buffers).
/// Not mergeable: a float update cannot be folded into 4-bit codes, so scoring runs dequantize + LoRA.
/// </summary>
public sealed class QLoraConfig : LowRankConfigBase
{
    /// <inheritdoc/>
    public override string MethodName => "qlora";

    /// <summary>Bits per frozen weight: 4 (NF4) or 8 (absmax int8). Default 4.</summary>
    public int Bits { get; set; } = 4;

    /// <summary>
    /// Weights per absmax block (must be even, so two 4-bit codes always share a byte). Default 64, as QLoRA.
    /// </summary>
    public int BlockSize { get; set; } = 64;

    /// <inheritdoc/>
    public override void Validate()
    {
        base.Validate();
        Require(Bits is 4 or 8, nameof(Bits), $"must be 4 (NF4) or 8 (int8), got {Bits}.");
        Require(BlockSize >= 2 && BlockSize % 2 == 0, nameof(BlockSize),
            $"must be an even number of at least 2, got {BlockSize}.");
    }

    internal override void Attach(PeftModel model)
    {
        var targets = ResolveTargets(model).ToHashSet(StringComparer.Ordinal);
        var encoderLinears = ModuleSurgery.NamedModules(model)
            .Where(m => m.Module is Linear && m.Path.StartsWith("bert.encoder.", StringComparison.Ordinal))
            .Select(m => (m.Path, Linear: (Linear)m.Module))
            .ToList();
        foreach (var (path, linear) in encoderLinears)
        {
            var quantized = new QuantizedLinear(linear, Bits, BlockSize);
            ModuleSurgery.Replace(model, path,
                targets.Contains(path) ? new QLoraLinear(quantized, Rank, Scaling, Dropout) : quantized);
            linear.Dispose(); // the float32 weight is what quantization saves
        }
    }

    internal override Onnx.OnnxMethodExport CreateOnnxExport() => new QLoraOnnxExport(Scaling, Bits, BlockSize);

    internal override bool IsTrainable(string name) =>
        name.Contains(".lora_A.", StringComparison.Ordinal) || name.Contains(".lora_B.", StringComparison.Ordinal);
}
