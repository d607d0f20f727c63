using Microsoft.ML.Peft.Methods.Lora;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Methods.Dora;

/// <summary>
/// A frozen <c>base_layer</c> with a LoRA pair (<c>lora_A</c>, <c>lora_B</c>) and a per-output-row magnitude
/// (<c>lora_magnitude_vector.weight</c>), computing <c>m / ‖W + s·B·A‖_c · (W + s·B·A) x + bias</c>.
/// </summary>
internal sealed class DoraLinear : nn.Module<Tensor, Tensor>
{
    internal readonly Linear base_layer;
    internal readonly Linear lora_A;
    internal readonly Linear lora_B;
    internal readonly Dropout lora_dropout;
    internal readonly DoraMagnitude lora_magnitude_vector;
    private readonly LoraBranch _lora;
    private readonly double _dropout;
    private Tensor? _originalWeight; // W before merging; a plain field set after construction, so it is no buffer.

    /// <summary>True while the update is folded into <c>base_layer</c>'s weight.</summary>
    public bool Merged => _originalWeight is not null;

    /// <summary>Wraps <paramref name="baseLayer"/> with a rank-<paramref name="rank"/> DoRA update.</summary>
    public DoraLinear(Linear baseLayer, int rank, double scaling, double dropout) : base("dora")
    {
        base_layer = baseLayer;
        var w = baseLayer.weight!;
        // LoRA's init (B zero) and m = ‖W‖_c: the untrained layer is exactly the base layer.
        _lora = new LoraBranch(w.shape[1], w.shape[0], rank, scaling, dropout, w.device);
        // Fields named as peft's submodules: registration takes the names from them (see LoraBranch).
        lora_A = _lora.A;
        lora_B = _lora.B;
        lora_dropout = _lora.Dropout;
        _dropout = dropout;
        lora_magnitude_vector = new DoraMagnitude(WeightNorm(w));
        RegisterComponents();
    }

    /// <summary>
    /// ‖W + s·B·A‖_c: the L2 norm of each output row (over the input dimension), without gradient.
    /// </summary>
    private Tensor WeightNorm(Tensor weight)
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var combined = weight + _lora.DeltaWeight();
        return linalg.vector_norm(combined, dims: [1]).MoveToOuterDisposeScope();
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor x)
    {
        if (Merged) return base_layer.forward(x);
        using var scope = NewDisposeScope();
        var result = base_layer.forward(x);
        var dropped = lora_dropout.forward(x);
        var loraResult = _lora.Product(dropped);
        // The norm is treated as a constant (no gradient), as the paper's section 4.3 and peft do.
        var scale = lora_magnitude_vector.weight / WeightNorm(base_layer.weight!);
        // W·x without bias: with dropout active it must be recomputed on the dropped input (as peft); otherwise reuse
        // the base result, which saves a matmul.
        var baseNoBias = training && _dropout > 0
            ? nn.functional.linear(dropped, base_layer.weight!)
            : base_layer.bias is null ? result : result - base_layer.bias;
        return (result + (scale - 1) * baseNoBias + _lora.Scale(scale * loraResult)).MoveToOuterDisposeScope();
    }

    /// <summary>Folds the update into the base weight (keeping a copy of W); a no-op when already merged.</summary>
    public void Merge()
    {
        if (Merged) return;
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var w = base_layer.weight!;
        var combined = w + _lora.DeltaWeight();
        var factor = (lora_magnitude_vector.weight / linalg.vector_norm(combined, dims: [1])).unsqueeze(1);
        var original = w.detach().clone().MoveToOuterDisposeScope();
        w.copy_(combined * factor);
        _originalWeight = original;
    }

    /// <summary>Restores the original base weight exactly; a no-op when not merged.</summary>
    public void Unmerge()
    {
        if (_originalWeight is null) return;
        using (no_grad()) base_layer.weight!.copy_(_originalWeight);
        _originalWeight.Dispose();
        _originalWeight = null;
    }

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (disposing) { _originalWeight?.Dispose(); _originalWeight = null; }
        base.Dispose(disposing);
    }
}

/// <summary>
/// Holds DoRA's trainable magnitude (one entry per output row) as <c>weight</c>, the name <c>peft</c> gives it.
/// </summary>
internal sealed class DoraMagnitude : nn.Module
{
    internal readonly Parameter weight;

    /// <summary>Starts the magnitude at <paramref name="initial"/> (which this module takes over).</summary>
    public DoraMagnitude(Tensor initial) : base("lora_magnitude_vector")
    {
        weight = new Parameter(initial);
        RegisterComponents();
    }
}
