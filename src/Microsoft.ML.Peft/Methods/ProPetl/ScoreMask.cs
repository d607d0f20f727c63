using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Methods.ProPetl;

/// <summary>
/// Binary masks from real-valued scores (ProPETL, after Ramanujan et al.'s edge-popup): keep the entries whose |score|
/// is among the top (1 − sparsity) of the tensor, zero the rest; in training the gradient passes straight through the
/// thresholding to |score|.
/// </summary>
internal static class ScoreMask
{
    /// <summary>How many of <paramref name="count"/> entries stay: count − ⌊sparsity · count⌋.</summary>
    public static long Kept(long count, double sparsity) => count - (long)Math.Floor(sparsity * count);

    /// <summary>The hard 0/1 mask, shaped like <paramref name="scores"/>.</summary>
    public static Tensor Hard(Tensor scores, double sparsity)
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var magnitude = scores.detach().abs().reshape(-1);
        long kept = Kept(magnitude.shape[0], sparsity);
        var mask = zeros_like(magnitude);
        if (kept > 0) mask.index_fill_(0, magnitude.topk((int)kept).indexes, 1.0);
        return mask.view(scores.shape).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The mask to multiply the prototype's weight with: hard in value; while <paramref name="training"/> it carries
    /// the straight-through gradient (∂mask/∂score = sign(score)), as hard + |s| − stop_gradient(|s|).
    /// </summary>
    public static Tensor Apply(Tensor scores, double sparsity, bool training)
    {
        var hard = Hard(scores, sparsity);
        if (!training || !scores.requires_grad) return hard;
        using var scope = NewDisposeScope();
        var magnitude = scores.abs();
        var result = hard + (magnitude - magnitude.detach());
        hard.Dispose();
        return result.MoveToOuterDisposeScope();
    }
}
