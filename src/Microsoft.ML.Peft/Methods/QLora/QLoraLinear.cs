using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Methods.QLora;

/// <summary>
/// A quantized frozen <c>base_layer</c> plus a float32 LoRA update <c>lora_B(lora_A(dropout(x))) · scaling</c>, named as
/// <c>peft</c>'s LoRA layers (<c>...query.lora_A.weight</c>). The update cannot be folded into 4-bit codes, so it is never merged.
/// </summary>
public sealed class QLoraLinear : nn.Module<Tensor, Tensor>
{
#pragma warning disable IDE1006
    internal readonly QuantizedLinear base_layer;
    internal readonly Linear lora_A;
    internal readonly Linear lora_B;
    internal readonly Dropout lora_dropout;
#pragma warning restore IDE1006
    private readonly double _scaling;

    /// <summary>Wraps <paramref name="baseLayer"/> with a rank-<paramref name="rank"/> update.</summary>
    public QLoraLinear(QuantizedLinear baseLayer, int rank, double scaling, double dropout) : base("qlora")
    {
        base_layer = baseLayer;
        var device = baseLayer.weight_absmax.device;
        lora_A = nn.Linear(baseLayer.InFeatures, rank, hasBias: false, device: device);
        lora_B = nn.Linear(rank, baseLayer.OutFeatures, hasBias: false, device: device);
        lora_dropout = nn.Dropout(dropout);
        _scaling = scaling;
        using (no_grad())
        {
            // LoRA's init: A Kaiming-uniform (a = √5), B zero, so the untrained layer is exactly the quantized base.
            nn.init.kaiming_uniform_(lora_A.weight!, Math.Sqrt(5));
            nn.init.zeros_(lora_B.weight!);
        }
        RegisterComponents();
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var update = lora_B.forward(lora_A.forward(lora_dropout.forward(x)));
        return (base_layer.forward(x) + update * _scaling).MoveToOuterDisposeScope();
    }
}
