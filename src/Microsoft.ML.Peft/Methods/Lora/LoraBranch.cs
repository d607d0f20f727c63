using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Methods.Lora;

/// <summary>
/// The low-rank branch every LoRA-family layer carries (LoRA, QLoRA, DoRA, UniPELT's gated LoRA, ProPETL's LoRA
/// prototype): the pair A [r, in] and B [out, r] with <c>peft</c>'s init, dropout on the input and the scaling, giving
/// the update <c>B(A(dropout(x))) · scaling</c> and its dense form ΔW = B·A·scaling.
/// </summary>
/// <remarks>
/// Deliberately not an <see cref="nn.Module"/>: TorchSharp prefixes a registered submodule's parameters with the
/// field that holds it, so a registered branch would turn <c>...query.lora_A.weight</c> into
/// <c>...query.branch.lora_A.weight</c> and saved models would no longer load. A layer that composes a branch keeps
/// its own fields <c>lora_A</c>, <c>lora_B</c>, <c>lora_dropout</c> set from it: its registration gives <c>peft</c>'s
/// names in the same order as before, and <c>ModuleSurgery.Replace</c> still finds a field for each child. The
/// branch and those fields hold the same modules; replacing one of them in the tree (nothing does) would leave the
/// branch computing with the old one.
/// </remarks>
internal sealed class LoraBranch
{
    /// <summary>The down-projection A [r, in] (<c>lora_A</c>).</summary>
    internal Linear A { get; }

    /// <summary>The up-projection B [out, r] (<c>lora_B</c>), zero at the start.</summary>
    internal Linear B { get; }

    /// <summary>Dropout on the branch's input (<c>lora_dropout</c>).</summary>
    internal Dropout Dropout { get; }

    /// <summary>The factor the low-rank product is multiplied by (alpha / r, or alpha / √r with rsLoRA).</summary>
    internal double Scaling { get; }

    /// <summary>A new rank-<paramref name="rank"/> branch for an <paramref name="inFeatures"/> →
    /// <paramref name="outFeatures"/> layer, its pair made by <see cref="NewPair"/>.</summary>
    internal LoraBranch(long inFeatures, long outFeatures, int rank, double scaling, double dropout, Device? device)
        : this(NewPair(inFeatures, outFeatures, rank, device), scaling, dropout) { }

    /// <summary>A branch over an existing pair (ProPETL's prototype, shared by every layer).</summary>
    internal LoraBranch((Linear A, Linear B) pair, double scaling, double dropout)
    {
        (A, B) = pair;
        Dropout = nn.Dropout(dropout);
        Scaling = scaling;
    }

    /// <summary>
    /// Creates A and B with <c>peft</c>'s init: A as <c>nn.Linear</c>'s default (Kaiming-uniform, a = √5), B zero, so
    /// B·A = 0 and the untrained layer equals its base. Both are created before either is initialised: that is the
    /// order of the random draws every seeded result so far depends on.
    /// </summary>
    internal static (Linear A, Linear B) NewPair(long inFeatures, long outFeatures, int rank, Device? device)
    {
        var a = nn.Linear(inFeatures, rank, hasBias: false, device: device);
        var b = nn.Linear(rank, outFeatures, hasBias: false, device: device);
        using (no_grad())
        {
            nn.init.kaiming_uniform_(a.weight!, Math.Sqrt(5));
            nn.init.zeros_(b.weight!);
        }
        return (a, b);
    }

    /// <summary>The update <c>B(A(dropout(x))) · scaling</c>.</summary>
    internal Tensor Update(Tensor x)
    {
        using var scope = NewDisposeScope();
        return Scale(Product(Dropout.forward(x))).MoveToOuterDisposeScope();
    }

    /// <summary>The update with the given weights in place of A's and B's (ProPETL's masked prototype).</summary>
    internal Tensor Update(Tensor x, Tensor a, Tensor b)
    {
        using var scope = NewDisposeScope();
        var product = nn.functional.linear(nn.functional.linear(Dropout.forward(x), a), b);
        return Scale(product).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// <c>B(A(dropped))</c> without dropout or scaling, for layers that reuse the dropped input (DoRA) or scale after
    /// combining (the gate of UniPELT): applying dropout here too would draw from the generator twice.
    /// </summary>
    internal Tensor Product(Tensor dropped)
    {
        using var scope = NewDisposeScope();
        return B.forward(A.forward(dropped)).MoveToOuterDisposeScope();
    }

    /// <summary><paramref name="t"/> · scaling (a new tensor).</summary>
    internal Tensor Scale(Tensor t)
    {
        using var scaling = Scaling.ToScalar(); // explicit: an implicit Scalar may be finalised mid-call
        return t.mul(scaling);
    }

    /// <summary>The dense update B·A·scaling, shaped like the base weight [out, in], without gradient.</summary>
    internal Tensor DeltaWeight() => DeltaWeight(A.weight!, B.weight!);

    /// <summary>The dense update b·a·scaling for the given weights (ProPETL's hard-masked prototype).</summary>
    internal Tensor DeltaWeight(Tensor a, Tensor b)
    {
        using var _ = no_grad();
        using var scaling = Scaling.ToScalar(); // explicit: an implicit Scalar may be finalised mid-call
        return b.matmul(a).mul_(scaling);
    }
}
