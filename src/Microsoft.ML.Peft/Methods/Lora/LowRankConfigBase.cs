using System.Text.RegularExpressions;
using Microsoft.ML.Peft.Modeling;
using Microsoft.ML.SearchSpace;

namespace Microsoft.ML.Peft.Methods.Lora;

/// <summary>
/// Options shared by the methods that add a rank-r update B·A to targeted linear layers (LoRA, DoRA, QLoRA): rank,
/// alpha, dropout, target modules and rsLoRA scaling, with one validation and one target resolution.
/// </summary>
public abstract class LowRankConfigBase : PeftMethodConfig
{
    /// <summary>The special <see cref="TargetModules"/> value that targets every linear layer of the encoder.</summary>
    public const string AllLinear = "all-linear";

    /// <summary>Rank r of the update. Default 8. Sweep range: {4, 8, 16}.</summary>
    [Choice(new object[] { 4, 8, 16 }, 8)]
    public int Rank { get; set; } = 8;

    /// <summary>
    /// Scaling numerator alpha; the update is multiplied by alpha / r (or alpha / √r with <see cref="UseRsLora"/>).
    /// Default 16. Sweep range: {8, 16, 32}.
    /// </summary>
    [Choice(new object[] { 8.0, 16.0, 32.0 }, 16.0)]
    public double Alpha { get; set; } = 16;

    /// <summary>Dropout on the LoRA branch's input during training. Default 0.1. Sweep range: 0 to 0.2.</summary>
    [Range(0.0, 0.2, 0.1, false)]
    public double Dropout { get; set; } = 0.1;

    /// <summary>
    /// Hugging Face module names to adapt, matched against the end of each module's path (<c>query</c> matches
    /// <c>encoder.layer.0.attention.self.query</c>), or <see cref="AllLinear"/>. DistilBERT names (<c>q_lin</c>, ...)
    /// are accepted.
    /// Default <c>query</c>, <c>value</c>. Sweep range: query+value, query+key+value, all-linear.
    /// </summary>
    [Choice(new object[] { "query,value", "query,key,value", AllLinear })]
    public string[] TargetModules { get; set; } = ["query", "value"];

    /// <summary>
    /// A regular expression that must match a module's whole path; when set it replaces <see cref="TargetModules"/>.
    /// Default null.
    /// </summary>
    public string? TargetModulesPattern { get; set; }

    /// <summary>
    /// Rank-stabilised LoRA (Kalajdzievski, 2023): scale by alpha / √r instead of alpha / r. Default false.
    /// </summary>
    public bool UseRsLora { get; set; }

    /// <summary>
    /// 2e-3: on SST-2 with the embedded MiniLM (16,000 rows × 2 epochs) LoRA reached 0.870 dev accuracy at 2e-3
    /// against 0.834 at 5e-4 and 0.872 for full fine-tuning (benchmarks/MethodComparison --preset lora-vs-full).
    /// </summary>
    public override double DefaultLearningRate => 2e-3;

    /// <summary>The factor applied to B A x.</summary>
    public double Scaling => UseRsLora ? Alpha / Math.Sqrt(Rank) : Alpha / Rank;


    /// <inheritdoc/>
    public override void Validate()
    {
        Require(Rank >= 1, nameof(Rank), $"must be at least 1, got {Rank}.");
        Require(Alpha > 0 && double.IsFinite(Alpha), nameof(Alpha), $"must be positive, got {Alpha}.");
        Require(Dropout is >= 0 and < 1, nameof(Dropout), $"must be in [0, 1), got {Dropout}.");
        RequireTargets(TargetModules, TargetModulesPattern);
    }

    /// <summary>Paths (inside <see cref="PeftModel"/>) of the linear layers this config targets.</summary>
    internal IReadOnlyList<string> ResolveTargets(PeftModel model) =>
        TargetResolver.Resolve(model, TargetModules, TargetModulesPattern, nameof(TargetModules));
}
