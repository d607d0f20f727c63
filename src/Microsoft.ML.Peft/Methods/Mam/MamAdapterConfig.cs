using Microsoft.ML.Peft.Methods.Adapters;
using Microsoft.ML.Peft.Methods.Prefix;
using Microsoft.ML.Peft.Modeling;

namespace Microsoft.ML.Peft.Methods.Mam;

/// <summary>
/// The Mix-and-Match adapter (He et al., 2022, "Towards a Unified View of Parameter-Efficient Transfer Learning"):
/// prefix tuning in every attention layer plus a scaled parallel adapter beside every feed-forward block, built from
/// <see cref="PrefixTuningConfig"/> and <see cref="ParallelAdapterConfig"/>. He et al. used 30 prefix positions and a
/// 512-unit adapter scaled by 4 on 1024-wide models; the adapter here keeps their ratio
/// (<see cref="ReductionFactor"/> 2, 192 units on a 384-wide encoder). He et al. trained the prefixes through an MLP;
/// here that is optional (<see cref="Reparameterize"/>, off by default for the reason given on
/// <see cref="PrefixTuningConfig"/>). Not mergeable.
/// Trainable parameters (L layers, hidden H, P = <see cref="NumVirtualTokens"/>,
/// b = H / <see cref="ReductionFactor"/>):
/// prefix as <see cref="PrefixTuningConfig"/> (<c>P·L·2·H</c> plain) plus <c>L · (H·b + b + b·H + H)</c>.
/// MiniLM-L6, defaults: 138,240 + 888,192 = 1,026,432.
/// </summary>
public sealed class MamAdapterConfig : PeftMethodConfig
{
    /// <inheritdoc/>
    public override string MethodName => "mam";

    /// <summary>Prefix positions per layer. Default 30 (He et al.).</summary>
    public int NumVirtualTokens { get; set; } = 30;

    /// <summary>Train the prefixes through an MLP, folded away after training. Default false.</summary>
    public bool Reparameterize { get; set; }

    /// <summary>Hidden width of the prefixes' MLP. Default 512.</summary>
    public int ProjectionHiddenSize { get; set; } = 512;

    /// <summary>Hidden size divided by the feed-forward adapter's width. Default 2.</summary>
    public int ReductionFactor { get; set; } = 2;

    /// <summary>Factor on the parallel adapter's output. Default 4 (He et al.).</summary>
    public double Scaling { get; set; } = 4.0;

    /// <summary>Activation inside the adapter. Default <see cref="AdapterNonLinearity.Relu"/>.</summary>
    public AdapterNonLinearity NonLinearity { get; set; } = AdapterNonLinearity.Relu;

    /// <summary>Dropout on the adapter's bottleneck during training. Default 0.</summary>
    public double AdapterDropout { get; set; }

    private PrefixTuningConfig PrefixPart() => new()
    {
        NumVirtualTokens = NumVirtualTokens,
        Reparameterize = Reparameterize,
        ProjectionHiddenSize = ProjectionHiddenSize,
    };

    private ParallelAdapterConfig AdapterPart() => new()
    {
        Placement = ParallelAdapterPlacement.Ffn,
        ReductionFactor = ReductionFactor,
        Scaling = Scaling,
        NonLinearity = NonLinearity,
        Dropout = AdapterDropout,
    };

    /// <inheritdoc/>
    public override void Validate()
    {
        PrefixPart().Validate();
        try { AdapterPart().Validate(); }
        catch (ArgumentOutOfRangeException e) when (e.ParamName == nameof(ParallelAdapterConfig.Dropout))
        {
            Require(false, nameof(AdapterDropout), $"must be in [0, 1), got {AdapterDropout}.");
        }
    }

    internal override void Attach(PeftModel model)
    {
        PrefixPart().Attach(model);
        AdapterPart().Attach(model);
    }

    internal override bool IsTrainable(string parameterName) =>
        PrefixPart().IsTrainable(parameterName) || AdapterPart().IsTrainable(parameterName);

    internal override void PrepareForInference(PeftModel model) => PrefixPart().PrepareForInference(model);

    internal override Onnx.OnnxMethodExport CreateOnnxExport() => new MamOnnxExport(AdapterPart().CreateOnnxExport());
}
