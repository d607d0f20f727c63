using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Methods;

/// <summary>
/// A frozen linear layer plus an additive weight update ΔW that can be folded into it for scoring (LoRA, AdaLoRA,
/// ProPETL's LoRA prototype): subclasses say what ΔW is; merging and unmerging are the same for all of them.
/// </summary>
internal abstract class DeltaLinear : nn.Module<Tensor, Tensor>
{
    /// <summary>Creates the module under <paramref name="name"/>.</summary>
    protected DeltaLinear(string name) : base(name) { }

    /// <summary>The frozen layer the update is folded into.</summary>
    internal abstract Linear MergeTarget { get; }

    /// <summary>True while the update is folded into the base weight.</summary>
    public bool Merged { get; private set; }

    /// <summary>The dense update ΔW, shaped like the base weight [out, in]. The caller disposes it.</summary>
    public abstract Tensor DeltaWeight();

    /// <summary>Folds the update into the base weight (W += ΔW); a no-op when already merged.</summary>
    public void Merge()
    {
        if (Merged) return;
        using var _ = no_grad();
        using var delta = DeltaWeight();
        MergeTarget.weight!.add_(delta);
        Merged = true;
    }

    /// <summary>Subtracts the update again; a no-op when not merged.</summary>
    public void Unmerge()
    {
        if (!Merged) return;
        using var _ = no_grad();
        using var delta = DeltaWeight();
        MergeTarget.weight!.sub_(delta);
        Merged = false;
    }
}
