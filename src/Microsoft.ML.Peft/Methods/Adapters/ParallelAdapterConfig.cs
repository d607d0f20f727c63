using Microsoft.ML.Peft.Modeling;

namespace Microsoft.ML.Peft.Methods.Adapters;

/// <summary>
/// Parallel adapters (He et al., 2022, "Towards a Unified View of Parameter-Efficient Transfer Learning"; AdapterHub's
/// <c>par_bn</c>): a bottleneck beside a sub-layer reads the sub-layer's input x and adds
/// <c>s · adapter_up(act(adapter_down(x)))</c> to the sub-layer's output before the residual LayerNorm.
/// <c>adapter_up</c> starts at zero, so an untrained adapter leaves the encoder's output unchanged. Not mergeable.
/// Trainable parameters per adapter, with b = H / <see cref="ReductionFactor"/>: <c>H·b + b + b·H + H</c>; one per
/// layer for <see cref="ParallelAdapterPlacement.Ffn"/> or <see cref="ParallelAdapterPlacement.Attention"/>, two for
/// <see cref="ParallelAdapterPlacement.Both"/>. MiniLM-L6 (H = 384, b = 192), Ffn: 6 · 148,032 = 888,192.
/// </summary>
public sealed class ParallelAdapterConfig : PeftMethodConfig
{
    /// <inheritdoc/>
    public override string MethodName => "parallel-adapter";

    /// <summary>
    /// Which sub-layers get an adapter beside them. Default <see cref="ParallelAdapterPlacement.Ffn"/>.
    /// </summary>
    public ParallelAdapterPlacement Placement { get; set; } = ParallelAdapterPlacement.Ffn;

    /// <summary>
    /// Hidden size divided by the bottleneck width. Default 2 (AdapterHub's <c>par_bn</c>; He et al.'s 512 units on a
    /// 1024-wide model), i.e. 192 units on a 384-wide encoder.
    /// </summary>
    public int ReductionFactor { get; set; } = 2;

    /// <summary>
    /// The factor s on the adapter's output. Default 4 (He et al.'s value for the feed-forward adapter).
    /// </summary>
    public double Scaling { get; set; } = 4.0;

    /// <summary>Activation inside the bottleneck. Default <see cref="AdapterNonLinearity.Relu"/>.</summary>
    public AdapterNonLinearity NonLinearity { get; set; } = AdapterNonLinearity.Relu;

    /// <summary>Dropout on the bottleneck activations during training. Default 0.</summary>
    public double Dropout { get; set; }

    /// <inheritdoc/>
    public override void Validate()
    {
        Require(ReductionFactor >= 1, nameof(ReductionFactor), $"must be at least 1, got {ReductionFactor}.");
        Require(Scaling > 0 && double.IsFinite(Scaling), nameof(Scaling), $"must be positive, got {Scaling}.");
        Require(Enum.IsDefined(Placement), nameof(Placement), $"has an unknown value {Placement}.");
        Require(Enum.IsDefined(NonLinearity), nameof(NonLinearity), $"has an unknown value {NonLinearity}.");
        Require(Dropout is >= 0 and < 1, nameof(Dropout), $"must be in [0, 1), got {Dropout}.");
    }

    internal override void Attach(PeftModel model)
    {
        var device = model.classifier.weight!.device;
        int b = AdapterSlots.Bottleneck(model.Encoder.Config.HiddenSize, ReductionFactor);
        AdapterSlots.Insert(model, attention: Placement != ParallelAdapterPlacement.Ffn,
            ffn: Placement != ParallelAdapterPlacement.Attention,
            hidden => new BottleneckAdapter(hidden, b, NonLinearity, parallel: true, Scaling, Dropout, gated: false,
                device));
    }

    internal override bool IsTrainable(string parameterName) => AdapterSlots.IsAdapterParameter(parameterName);

    internal override Onnx.OnnxMethodExport CreateOnnxExport() => new AdapterOnnxExport(
        attention: Placement != ParallelAdapterPlacement.Ffn, ffn: Placement != ParallelAdapterPlacement.Attention,
        parallel: true, NonLinearity, Scaling);
}
