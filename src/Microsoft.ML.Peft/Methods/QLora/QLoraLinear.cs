using Microsoft.ML.Peft.Methods.Lora;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Methods.QLora;

/// <summary>
/// A quantized frozen <c>base_layer</c> plus a float32 LoRA update <c>lora_B(lora_A(dropout(x))) · scaling</c>, named
/// as <c>peft</c>'s LoRA layers (<c>...query.lora_A.weight</c>). The update cannot be folded into 4-bit codes, so it is
/// never merged.
/// </summary>
internal sealed class QLoraLinear : nn.Module<Tensor, Tensor>
{
    internal readonly QuantizedLinear base_layer;
    internal readonly Linear lora_A;
    internal readonly Linear lora_B;
    internal readonly Dropout lora_dropout;
    private readonly LoraBranch _lora;

    /// <summary>Wraps <paramref name="baseLayer"/> with a rank-<paramref name="rank"/> update.</summary>
    public QLoraLinear(QuantizedLinear baseLayer, int rank, double scaling, double dropout) : base("qlora")
    {
        base_layer = baseLayer;
        // LoRA's init (B zero), so the untrained layer is exactly the quantized base.
        _lora = new LoraBranch(baseLayer.InFeatures, baseLayer.OutFeatures, rank, scaling, dropout,
            baseLayer.weight_absmax.device);
        // Fields named as peft's submodules: registration takes the names from them (see LoraBranch).
        lora_A = _lora.A;
        lora_B = _lora.B;
        lora_dropout = _lora.Dropout;
        RegisterComponents();
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return (base_layer.forward(x) + _lora.Update(x)).MoveToOuterDisposeScope();
    }
}
