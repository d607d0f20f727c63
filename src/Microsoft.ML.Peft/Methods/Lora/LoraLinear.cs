using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Methods.Lora;

/// <summary>
/// A frozen <c>base_layer</c> plus a low-rank update <c>lora_B(lora_A(dropout(x))) · scaling</c>; submodule names
/// follow <c>peft</c>'s so saved adapters read as <c>...query.lora_A.weight</c>.
/// </summary>
public sealed class LoraLinear : DeltaLinear
{
#pragma warning disable IDE1006
    internal readonly Linear base_layer;
    internal readonly Linear lora_A;
    internal readonly Linear lora_B;
    internal readonly Dropout lora_dropout;
#pragma warning restore IDE1006
    private readonly double _scaling;

    /// <summary>Wraps <paramref name="baseLayer"/> with a rank-<paramref name="rank"/> update.</summary>
    public LoraLinear(Linear baseLayer, int rank, double scaling, double dropout) : base("lora")
    {
        base_layer = baseLayer;
        long inF = baseLayer.weight!.shape[1], outF = baseLayer.weight.shape[0];
        lora_A = nn.Linear(inF, rank, hasBias: false, device: baseLayer.weight.device);
        lora_B = nn.Linear(rank, outF, hasBias: false, device: baseLayer.weight.device);
        lora_dropout = nn.Dropout(dropout);
        _scaling = scaling;
        using (no_grad())
        {
            // peft's init: A as nn.Linear's default (Kaiming-uniform, a = √5), B zero, so B·A = 0 at the start.
            nn.init.kaiming_uniform_(lora_A.weight!, Math.Sqrt(5));
            nn.init.zeros_(lora_B.weight!);
        }
        RegisterComponents();
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor x)
    {
        if (Merged) return base_layer.forward(x);
        using var scope = NewDisposeScope();
        var update = lora_B.forward(lora_A.forward(lora_dropout.forward(x)));
        return (base_layer.forward(x) + update * _scaling).MoveToOuterDisposeScope();
    }

    internal override Linear MergeTarget => base_layer;

    /// <summary>The dense update B·A·scaling, shaped like the base weight [out, in].</summary>
    public override Tensor DeltaWeight()
    {
        using var _ = no_grad();
        using var scaling = _scaling.ToScalar(); // explicit: an implicit Scalar may be finalised mid-call
        return lora_B.weight!.matmul(lora_A.weight!).mul_(scaling);
    }
}
