using Microsoft.ML.Peft.Methods.Adapters;
using Microsoft.ML.Peft.Methods.Lora;
using Microsoft.ML.Peft.Methods.Prefix;
using Microsoft.ML.Peft.Modeling;
using TorchSharp.Modules;

namespace Microsoft.ML.Peft.Methods.UniPelt;

/// <summary>
/// UniPELT (Mao et al., 2022): LoRA, prefix tuning and a sequential bottleneck adapter (Pfeiffer placement, after the
/// feed-forward block) together, each scaled by a learned gate sigmoid(W_g x) so the model can turn each one up or down
/// per input. Gates, as the paper: LoRA's from the projection's input, the adapter's from its input, both one value per
/// token; the prefix gate from the layer input, averaged over the row's real tokens (the prefixes are shared by all
/// tokens). UniPELT's code averages every gate over all positions, padding included; per-token gates and a masked
/// average keep a row's score independent of its batch's padding. Built from <see cref="LoraConfig"/>
/// (<see cref="LoraLinear"/>'s submodules), <see cref="PrefixTuningConfig"/> (MLP optional, off by default as there)
/// and <see cref="BottleneckAdapterConfig"/>. Not mergeable. Trainable parameters (L layers, hidden H, T LoRA targets
/// per layer of width H, rank r, P prefix positions, b = H / <see cref="ReductionFactor"/>):
/// LoRA <c>L·T·(2·r·H + H + 1)</c> + prefix as <see cref="PrefixTuningConfig"/> (<c>P·L·2·H</c> plain) +
/// <c>L·(H + 1)</c> prefix gates + adapter <c>L·(H·b + b + b·H + H + H + 1)</c>.
/// MiniLM-L6, defaults (T = 2, r = 8, P = 10, b = 24): 78,348 + 46,080 + 2,310 + 115,350 = 242,088.
/// </summary>
public sealed class UniPeltConfig : PeftMethodConfig
{
    /// <inheritdoc/>
    public override string MethodName => "unipelt";

    /// <summary>LoRA rank. Default 8 (Mao et al.).</summary>
    public int LoraRank { get; set; } = 8;

    /// <summary>LoRA scaling numerator (update × alpha / r). Default 16.</summary>
    public double LoraAlpha { get; set; } = 16;

    /// <summary>Dropout on LoRA's input during training. Default 0.1.</summary>
    public double LoraDropout { get; set; } = 0.1;

    /// <summary>
    /// Modules that get gated LoRA, as <see cref="LowRankConfigBase.TargetModules"/>. Default <c>query</c>,
    /// <c>value</c>.
    /// </summary>
    public string[] LoraTargetModules { get; set; } = ["query", "value"];

    /// <summary>Prefix positions per layer. Default 10 (Mao et al.).</summary>
    public int NumVirtualTokens { get; set; } = 10;

    /// <summary>Train the prefixes through an MLP, folded away after training. Default false.</summary>
    public bool Reparameterize { get; set; }

    /// <summary>Hidden width of the prefixes' MLP. Default 512.</summary>
    public int ProjectionHiddenSize { get; set; } = 512;

    /// <summary>
    /// Hidden size divided by the adapter's width. Default 16 (Mao et al.'s 48 units on 768-wide BERT-base; 24 on
    /// MiniLM).
    /// </summary>
    public int ReductionFactor { get; set; } = 16;

    /// <summary>Activation inside the adapter. Default <see cref="AdapterNonLinearity.Relu"/>.</summary>
    public AdapterNonLinearity NonLinearity { get; set; } = AdapterNonLinearity.Relu;

    private LoraConfig LoraPart() => new()
    {
        Rank = LoraRank, Alpha = LoraAlpha, Dropout = LoraDropout, TargetModules = LoraTargetModules,
    };

    private PrefixTuningConfig PrefixPart() => new()
    {
        NumVirtualTokens = NumVirtualTokens, Reparameterize = Reparameterize,
        ProjectionHiddenSize = ProjectionHiddenSize, Gated = true,
    };

    private BottleneckAdapterConfig AdapterPart() => new()
    {
        Placement = BottleneckAdapterPlacement.Pfeiffer, ReductionFactor = ReductionFactor, NonLinearity = NonLinearity,
        Gated = true,
    };

    /// <inheritdoc/>
    public override void Validate()
    {
        Require(LoraRank >= 1, nameof(LoraRank), $"must be at least 1, got {LoraRank}.");
        Require(LoraAlpha > 0 && double.IsFinite(LoraAlpha), nameof(LoraAlpha), $"must be positive, got {LoraAlpha}.");
        Require(LoraDropout is >= 0 and < 1, nameof(LoraDropout), $"must be in [0, 1), got {LoraDropout}.");
        Require(LoraTargetModules is { Length: > 0 } && LoraTargetModules.All(t => !string.IsNullOrWhiteSpace(t)),
            nameof(LoraTargetModules), "must name at least one module.");
        PrefixPart().Validate();
        AdapterPart().Validate();
    }

    internal override void Attach(PeftModel model)
    {
        var lora = LoraPart();
        foreach (var path in TargetResolver.Resolve(model, LoraTargetModules, null, nameof(LoraTargetModules)))
        {
            var linear = (Linear)ModuleSurgery.Get(model, path);
            var gated = new GatedLoraLinear(new LoraLinear(linear, lora.Rank, lora.Scaling, lora.Dropout));
            ModuleSurgery.Replace(model, path, gated);
        }
        PrefixPart().Attach(model);
        AdapterPart().Attach(model);
    }

    internal override bool IsTrainable(string parameterName) =>
        LoraPart().IsTrainable(parameterName) || parameterName.Contains(".lora_gate.", StringComparison.Ordinal)
        || PrefixPart().IsTrainable(parameterName) || AdapterPart().IsTrainable(parameterName);

    internal override void PrepareForInference(PeftModel model) => PrefixPart().PrepareForInference(model);

    /// <summary>Gated LoRA, prefix and adapter as nodes: the gates read the input, so nothing merges.</summary>
    internal override Onnx.OnnxMethodExport CreateOnnxExport() =>
        new UniPeltOnnxExport(LoraPart().Scaling, NonLinearity);
}
