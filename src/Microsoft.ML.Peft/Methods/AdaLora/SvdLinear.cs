using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Methods.AdaLora;

/// <summary>
/// AdaLoRA's SVD-form adapter around a frozen <c>base_layer</c>: <c>W x + P (Λ ⊙ Q x) · alpha / r_init</c> with
/// <c>lora_A</c> = Q [r, in] (right singular vectors), <c>lora_E</c> = Λ [r, 1] (singular values) and
/// <c>lora_B</c> = P [out, r] (left singular vectors), named as <c>peft</c>'s <c>SVDLinear</c>.
/// </summary>
internal sealed class SvdLinear : DeltaLinear
{
    internal readonly Linear base_layer;
    // Not readonly: TorchSharp swaps parameter fields when the module moves between devices.
    internal Parameter lora_A;
    internal Parameter lora_E;
    internal Parameter lora_B;
    internal readonly Dropout lora_dropout;
    private readonly double _scale;

    /// <summary>Number of singular values (the initial rank; pruned ones are zero, not removed).</summary>
    public int Rank { get; }

    /// <summary>Wraps <paramref name="baseLayer"/> with a rank-<paramref name="rank"/> SVD-form update.</summary>
    public SvdLinear(Linear baseLayer, int rank, double alpha, double dropout) : base("svd")
    {
        base_layer = baseLayer;
        var w = baseLayer.weight!;
        long inF = w.shape[1], outF = w.shape[0];
        Rank = rank;
        // peft: scaling = lora_alpha / (ranknum + 1e-5) with ranknum the initial rank.
        _scale = alpha / (rank + 1e-5);
        // peft's init: P and Q ~ N(0, 0.02), Λ = 0, so the untrained update is zero.
        lora_A = new Parameter(normal(0, 0.02, [rank, inF], device: w.device));
        lora_E = new Parameter(zeros(rank, 1, device: w.device));
        lora_B = new Parameter(normal(0, 0.02, [outF, rank], device: w.device));
        lora_dropout = nn.Dropout(dropout);
        RegisterComponents();
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor x)
    {
        if (Merged) return base_layer.forward(x);
        using var scope = NewDisposeScope();
        var update = lora_dropout.forward(x).matmul((lora_A * lora_E).t()).matmul(lora_B.t());
        return (base_layer.forward(x) + update * _scale).MoveToOuterDisposeScope();
    }

    internal override Linear MergeTarget => base_layer;

    /// <summary>The dense update P·(Λ ⊙ Q)·scale, shaped like the base weight [out, in].</summary>
    public override Tensor DeltaWeight()
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        using var scaling = _scale.ToScalar(); // explicit: an implicit Scalar may be finalised mid-call
        return lora_B.matmul(lora_A * lora_E).mul_(scaling).MoveToOuterDisposeScope();
    }
}
