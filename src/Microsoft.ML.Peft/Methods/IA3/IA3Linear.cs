using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Methods.IA3;

/// <summary>
/// A frozen <c>base_layer</c> whose output (attention keys/values: <c>ia3_l</c> shaped [out, 1]) or input
/// (feed-forward: [1, in]) is rescaled per channel by the learned vector <c>ia3_l</c>, as <c>peft</c>'s IA3
/// <c>Linear</c>.
/// </summary>
internal sealed class IA3Linear : nn.Module<Tensor, Tensor>
{
    internal readonly Linear base_layer;
    internal readonly Parameter ia3_l;

    /// <summary>
    /// True when the vector scales the layer's input (feed-forward placement) rather than its output.
    /// </summary>
    public bool IsFeedforward { get; }

    /// <summary>True while the vector is folded into <c>base_layer</c>'s weight (and bias).</summary>
    public bool Merged { get; private set; }

    /// <summary>
    /// Wraps <paramref name="baseLayer"/> with a vector of ones, so the wrapped layer starts equal to it.
    /// </summary>
    public IA3Linear(Linear baseLayer, bool isFeedforward) : base("ia3")
    {
        base_layer = baseLayer;
        IsFeedforward = isFeedforward;
        long inF = baseLayer.weight!.shape[1], outF = baseLayer.weight.shape[0];
        ia3_l = new Parameter(isFeedforward
            ? ones(1, inF, device: baseLayer.weight.device)
            : ones(outF, 1, device: baseLayer.weight.device));
        RegisterComponents();
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor x)
    {
        if (Merged) return base_layer.forward(x);
        using var scope = NewDisposeScope();
        var scale = ia3_l.flatten().to(x.dtype);
        var y = IsFeedforward ? base_layer.forward(x * scale) : base_layer.forward(x) * scale;
        return y.MoveToOuterDisposeScope();
    }

    /// <summary>True when some entry of the vector is zero, so a merge could not be undone.</summary>
    internal bool HasZero()
    {
        using var _ = no_grad();
        using var zero = ia3_l.eq(0).any();
        return zero.item<bool>();
    }

    /// <summary>
    /// Folds the vector into the base layer: weight rows and bias for an output scale, weight columns for an input
    /// scale (the bias is added after the input is scaled, so it stays). A no-op when already merged.
    /// </summary>
    public void Merge()
    {
        if (Merged) return;
        using var _ = no_grad();
        base_layer.weight!.mul_(ia3_l);
        if (!IsFeedforward && base_layer.bias is { } b)
        {
            using var flat = ia3_l.flatten();
            b.mul_(flat);
        }
        Merged = true;
    }

    /// <summary>
    /// Divides the vector out again (exact up to rounding; the vector itself is kept). A no-op when not merged.
    /// </summary>
    public void Unmerge()
    {
        if (!Merged) return;
        using var _ = no_grad();
        base_layer.weight!.div_(ia3_l);
        if (!IsFeedforward && base_layer.bias is { } b)
        {
            using var flat = ia3_l.flatten();
            b.div_(flat);
        }
        Merged = false;
    }
}
