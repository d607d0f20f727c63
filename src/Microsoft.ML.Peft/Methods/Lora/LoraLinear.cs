using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Methods.Lora;

/// <summary>
/// A frozen <c>base_layer</c> plus a low-rank update <c>lora_B(lora_A(dropout(x))) · scaling</c>; submodule names
/// follow <c>peft</c>'s so saved adapters read as <c>...query.lora_A.weight</c>.
/// </summary>
internal sealed class LoraLinear : DeltaLinear
{
    internal readonly Linear base_layer;
    internal readonly Linear lora_A;
    internal readonly Linear lora_B;
    internal readonly Dropout lora_dropout;

    /// <summary>The low-rank pair, dropout and scaling; UniPELT's gated layer takes it over.</summary>
    internal LoraBranch Branch { get; }

    /// <summary>Wraps <paramref name="baseLayer"/> with a rank-<paramref name="rank"/> update.</summary>
    public LoraLinear(Linear baseLayer, int rank, double scaling, double dropout) : base("lora")
    {
        base_layer = baseLayer;
        var w = baseLayer.weight!;
        Branch = new LoraBranch(w.shape[1], w.shape[0], rank, scaling, dropout, w.device);
        // Fields named as peft's submodules: registration takes the names from them (see LoraBranch).
        lora_A = Branch.A;
        lora_B = Branch.B;
        lora_dropout = Branch.Dropout;
        RegisterComponents();
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor x)
    {
        if (Merged) return base_layer.forward(x);
        using var scope = NewDisposeScope();
        return (base_layer.forward(x) + Branch.Update(x)).MoveToOuterDisposeScope();
    }

    internal override Linear MergeTarget => base_layer;

    /// <summary>The dense update B·A·scaling, shaped like the base weight [out, in].</summary>
    public override Tensor DeltaWeight() => Branch.DeltaWeight();
}
