using Microsoft.ML.Peft.Modeling;
using Microsoft.ML.SearchSpace;

namespace Microsoft.ML.Peft.Methods.Adapters;

/// <summary>
/// Sequential bottleneck adapters (Houlsby et al., 2019; Pfeiffer et al., 2021; AdapterHub's <c>double_seq_bn</c> /
/// <c>seq_bn</c>): inside a residual-output block, the projected output h = dropout(dense(x)) becomes
/// <c>h + adapter_up(act(adapter_down(h)))</c> before the residual LayerNorm. <c>adapter_up</c> starts at zero, so an
/// untrained adapter leaves the encoder's output unchanged. Not mergeable (the adapter is non-linear).
/// Trainable parameters per adapter, with bottleneck b = H / <see cref="ReductionFactor"/>: <c>H·b + b + b·H + H</c>;
/// <see cref="BottleneckAdapterPlacement.Houlsby"/> puts 2 per layer,
/// <see cref="BottleneckAdapterPlacement.Pfeiffer"/> 1.
/// MiniLM-L6 (H = 384, b = 24), Houlsby: 6 · 2 · 18,840 = 226,080.
/// </summary>
public sealed class BottleneckAdapterConfig : PeftMethodConfig
{
    /// <inheritdoc/>
    public override string MethodName => "adapter";

    /// <summary>
    /// 1e-3 (the shared default is 5e-4). Measured on 3,000 SST-2 rows at the stage's plan: 5e-4 0.814, 1e-3 0.835,
    /// 2e-3 0.834. The parallel and MAM adapters keep 5e-4 (MAM fell to 0.643 at 2e-3).
    /// </summary>
    public override double DefaultLearningRate => 1e-3;

    /// <summary>
    /// Where the adapters go: after attention and feed-forward (Houlsby) or after feed-forward only (Pfeiffer). Default
    /// <see cref="BottleneckAdapterPlacement.Houlsby"/>.
    /// </summary>
    public BottleneckAdapterPlacement Placement { get; set; } = BottleneckAdapterPlacement.Houlsby;

    /// <summary>
    /// Hidden size divided by the bottleneck width (rounded down, at least 1 unit). Default 16 (24 units for a 384-wide
    /// encoder). Sweep range: {8, 16, 32}.
    /// </summary>
    [Choice(new object[] { 8, 16, 32 }, 16)]
    public int ReductionFactor { get; set; } = 16;

    /// <summary>Activation inside the bottleneck. Default <see cref="AdapterNonLinearity.Relu"/>.</summary>
    public AdapterNonLinearity NonLinearity { get; set; } = AdapterNonLinearity.Relu;

    /// <summary>Dropout on the bottleneck activations during training. Default 0.</summary>
    public double Dropout { get; set; }

    /// <summary>
    /// UniPELT's per-token gate sigmoid(W x) on each adapter's update; set by methods that compose this one.
    /// </summary>
    internal bool Gated { get; set; }

    /// <inheritdoc/>
    public override void Validate()
    {
        Require(ReductionFactor >= 1, nameof(ReductionFactor), $"must be at least 1, got {ReductionFactor}.");
        Require(Enum.IsDefined(Placement), nameof(Placement), $"has an unknown value {Placement}.");
        Require(Enum.IsDefined(NonLinearity), nameof(NonLinearity), $"has an unknown value {NonLinearity}.");
        Require(Dropout is >= 0 and < 1, nameof(Dropout), $"must be in [0, 1), got {Dropout}.");
    }

    internal override void Attach(PeftModel model)
    {
        var device = model.classifier.weight!.device;
        int b = AdapterSlots.Bottleneck(model.Encoder.Config.HiddenSize, ReductionFactor);
        AdapterSlots.Insert(model, attention: Placement == BottleneckAdapterPlacement.Houlsby, ffn: true,
            hidden => new BottleneckAdapter(hidden, b, NonLinearity, parallel: false, scaling: 1.0, Dropout, Gated,
                device));
    }

    internal override bool IsTrainable(string parameterName) => AdapterSlots.IsAdapterParameter(parameterName);

    internal override Onnx.OnnxMethodExport CreateOnnxExport() => new AdapterOnnxExport(
        attention: Placement == BottleneckAdapterPlacement.Houlsby, ffn: true, parallel: false, NonLinearity,
        scaling: 1.0, Gated);
}
