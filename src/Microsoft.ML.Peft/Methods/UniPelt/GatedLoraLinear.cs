using Microsoft.ML.Peft.Methods.Lora;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Methods.UniPelt;

/// <summary>
/// UniPELT's gated LoRA: <c>W x + sigmoid(lora_gate(x)) · lora_B(lora_A(dropout(x))) · scaling</c>, the gate one
/// value per token. It takes over a <see cref="LoraLinear"/>'s base layer and branch (so peft's init and the names
/// <c>base_layer</c>, <c>lora_A</c>, <c>lora_B</c> are LoRA's own) and adds <c>lora_gate</c>. Not mergeable: the gate
/// depends on the input.
/// </summary>
internal sealed class GatedLoraLinear : nn.Module<Tensor, Tensor>
{
    internal readonly Linear base_layer;
    internal readonly Linear lora_A;
    internal readonly Linear lora_B;
    internal readonly Dropout lora_dropout;
    internal readonly Linear lora_gate;
    private readonly LoraBranch _lora;

    /// <summary>Takes over <paramref name="lora"/>'s parts and adds the gate.</summary>
    public GatedLoraLinear(LoraLinear lora) : base("lora")
    {
        base_layer = lora.base_layer;
        _lora = lora.Branch;
        // Fields named as peft's submodules: registration takes the names from them (see LoraBranch).
        lora_A = _lora.A;
        lora_B = _lora.B;
        lora_dropout = _lora.Dropout;
        lora_gate = nn.Linear(base_layer.weight!.shape[1], 1, device: base_layer.weight.device);
        using (no_grad())
        {
            // As UniPELT's gates: N(0, 0.02) weights and zero bias, so the gate starts near 0.5.
            nn.init.normal_(lora_gate.weight!, 0, 0.02);
            nn.init.zeros_(lora_gate.bias!);
        }
        RegisterComponents();
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        // Gate first, then scale: the order the products were always taken in, so scores stay bit-identical.
        var update = _lora.Product(lora_dropout.forward(x)) * lora_gate.forward(x).sigmoid();
        return (base_layer.forward(x) + _lora.Scale(update)).MoveToOuterDisposeScope();
    }
}
