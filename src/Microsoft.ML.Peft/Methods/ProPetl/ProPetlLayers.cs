using Microsoft.ML.Peft.Methods.Lora;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Methods.ProPetl;

/// <summary>
/// Wraps a layer's FFN output projection (<c>output.dense</c>): <c>h + adapter(h)</c> with <c>h = dense(x)</c>, so the
/// shared adapter sits after the FFN, before the residual and LayerNorm (Houlsby's placement), masked by this layer's
/// scores.
/// </summary>
internal sealed class ProPetlAdapterLayer : nn.Module<Tensor, Tensor>
{
    internal readonly nn.Module<Tensor, Tensor> base_layer;
    internal readonly AdapterMasks propetl_mask;
    private readonly Shared<AdapterPrototype> _prototype;
    private readonly double _sparsity;

    internal ProPetlAdapterLayer(nn.Module<Tensor, Tensor> baseLayer, Shared<AdapterPrototype> prototype, long hidden,
        long bottleneck, double sparsity) : base("propetl_adapter")
    {
        base_layer = baseLayer;
        _prototype = prototype;
        _sparsity = sparsity;
        propetl_mask = new AdapterMasks(hidden, bottleneck);
        RegisterComponents();
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = base_layer.forward(x);
        var down = ScoreMask.Apply(propetl_mask.down_mask, _sparsity, training);
        var up = ScoreMask.Apply(propetl_mask.up_mask, _sparsity, training);
        return (h + _prototype.Value.Forward(h, down, up)).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// A frozen <c>base_layer</c> plus the shared LoRA pair masked by this layer's scores:
/// <c>W x + (B ⊙ M_B)(A ⊙ M_A) dropout(x) · scaling</c>.
/// </summary>
internal sealed class ProPetlLoraLinear : DeltaLinear
{
    internal readonly Linear base_layer;
    internal readonly LoraMasks propetl_mask;
    internal readonly Dropout lora_dropout;
    // This layer's dropout and scaling over the prototype's pair; the pair is registered once, on the prototype.
    private readonly LoraBranch _lora;
    private readonly double _sparsity;

    internal ProPetlLoraLinear(Linear baseLayer, Shared<LoraPairPrototype> prototype, int rank, double scaling,
        double dropout, double sparsity) : base("propetl_lora")
    {
        base_layer = baseLayer;
        _sparsity = sparsity;
        var w = baseLayer.weight!;
        propetl_mask = new LoraMasks(w.shape[1], w.shape[0], rank);
        _lora = new LoraBranch((prototype.Value.lora_A, prototype.Value.lora_B), scaling, dropout);
        lora_dropout = _lora.Dropout;
        RegisterComponents();
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor x)
    {
        if (Merged) return base_layer.forward(x);
        using var scope = NewDisposeScope();
        var a = _lora.A.weight! * ScoreMask.Apply(propetl_mask.lora_A_mask, _sparsity, training);
        var b = _lora.B.weight! * ScoreMask.Apply(propetl_mask.lora_B_mask, _sparsity, training);
        return (base_layer.forward(x) + _lora.Update(x, a, b)).MoveToOuterDisposeScope();
    }

    internal override Linear MergeTarget => base_layer;

    /// <summary>This layer's dense update (B ⊙ M_B)(A ⊙ M_A)·scaling with hard masks, shaped [out, in].</summary>
    public override Tensor DeltaWeight()
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var a = _lora.A.weight! * ScoreMask.Hard(propetl_mask.lora_A_mask, _sparsity);
        var b = _lora.B.weight! * ScoreMask.Hard(propetl_mask.lora_B_mask, _sparsity);
        return _lora.DeltaWeight(a, b).MoveToOuterDisposeScope();
    }
}
