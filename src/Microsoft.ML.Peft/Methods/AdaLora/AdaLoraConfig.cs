using System.Text.RegularExpressions;
using Microsoft.ML.Peft.Methods.Lora;
using Microsoft.ML.Peft.Modeling;
using TorchSharp.Modules;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Methods.AdaLora;

/// <summary>
/// AdaLoRA (Zhang et al., 2023; <c>peft</c>'s AdaLoRA): each targeted linear layer gets an SVD-form update
/// <c>P · Λ · Q · alpha / r_init</c> (<c>lora_B</c> = P [out, r], <c>lora_E</c> = Λ [r, 1],
/// <c>lora_A</c> = Q [r, in]) starting at <see cref="InitialRank"/> singular values per layer. During training the
/// total budget falls on a cubic schedule to <see cref="TargetRank"/> × layers: after each step the least important
/// singular values (sensitivity × uncertainty EMAs) are zeroed, and after the final allocation the pruned ones stay
/// zero. An orthogonality regulariser <c>OrthRegWeight · mean(‖QQᵀ − I‖_F, ‖PᵀP − I‖_F)</c> is added
/// to the loss. Λ starts at zero, so the untrained model equals the base.
/// Trainable parameters per targeted layer: <c>r_init · (in + out + 1)</c> (pruned entries stay allocated, at zero);
/// MiniLM-L6 with r_init = 12 on query and value: 6 · 2 · 12 · (384 + 384 + 1) = 110,736 (plus the head).
/// Mergeable like LoRA: <c>W += P · (Λ ⊙ mask) · Q · alpha / r_init</c>.
/// </summary>
public sealed class AdaLoraConfig : PeftMethodConfig
{
    private AdaLoraRankAllocator? _allocator;

    /// <inheritdoc/>
    public override string MethodName => "adalora";

    /// <summary>
    /// 5e-3, 2.5 times LoRA's: Λ starts at zero and P, Q at N(0, 0.02), so the update starts far smaller than LoRA's
    /// and needs a higher rate to grow. Measured at the stage's default plan (benchmarks/README.md), one seed: on 3,000
    /// SST-2 rows (320 steps) 5e-4 0.520 (majority), 2e-3 0.749, 5e-3 0.825, 1e-2 0.828; on 16,000 rows (1,500 steps)
    /// 3e-3 0.853, 5e-3 0.858, 1e-2 0.844 (full fine-tuning 0.877). 5e-3 is within a third of a point of the best at
    /// the small size and the best at the large one.
    /// </summary>
    public override double DefaultLearningRate => 5e-3;

    /// <summary>Singular values per layer at the start (<c>peft</c>'s <c>init_r</c>). Default 12.</summary>
    public int InitialRank { get; set; } = 12;

    /// <summary>
    /// Average singular values per layer after the budget has been cut (<c>peft</c>'s <c>target_r</c>). Default 8.
    /// </summary>
    public int TargetRank { get; set; } = 8;

    /// <summary>
    /// Scaling numerator; the update is multiplied by alpha / <see cref="InitialRank"/>. Default 16 (peft: 8; 16
    /// matches this library's LoRA).
    /// </summary>
    public double Alpha { get; set; } = 16;

    /// <summary>Dropout on the adapter branch's input during training. Default 0.1.</summary>
    public double Dropout { get; set; } = 0.1;

    /// <summary>
    /// Hugging Face module names to adapt (same rules as <see cref="LowRankConfigBase.TargetModules"/>). Default
    /// <c>query</c>, <c>value</c>.
    /// </summary>
    public string[] TargetModules { get; set; } = ["query", "value"];

    /// <summary>
    /// A regular expression that must match a module's whole path; when set it replaces <see cref="TargetModules"/>.
    /// Default null.
    /// </summary>
    public string? TargetModulesPattern { get; set; }

    /// <summary>
    /// Fraction of the total steps trained at the full initial budget before pruning starts (<c>peft</c>'s
    /// <c>tinit</c>, in steps there; a fraction here because the stage is given epochs). Default 0.1.
    /// </summary>
    public double InitialWarmupFraction { get; set; } = 0.1;

    /// <summary>
    /// Fraction of the total steps trained at the final budget with the pruning pattern fixed (<c>peft</c>'s
    /// <c>tfinal</c>).
    /// Default 0.2.
    /// </summary>
    public double FinalFraction { get; set; } = 0.2;

    /// <summary>
    /// Steps between two budget allocations while the budget falls (<c>peft</c>'s <c>deltaT</c>). Default 1.
    /// </summary>
    public int DeltaT { get; set; } = 1;

    /// <summary>EMA coefficient of the sensitivity. Default 0.85.</summary>
    public double Beta1 { get; set; } = 0.85;

    /// <summary>EMA coefficient of the uncertainty. Default 0.85.</summary>
    public double Beta2 { get; set; } = 0.85;

    /// <summary>
    /// Weight of the orthogonality regulariser on P and Q; 0 turns it off. Default 0.5, as <c>peft</c>. Λ starts at
    /// zero, so at first only the regulariser moves P and Q; at the default learning rate (1e-2) it learns either way.
    /// </summary>
    public double OrthRegWeight { get; set; } = 0.5;

    /// <inheritdoc/>
    public override void Validate()
    {
        Require(InitialRank >= 1, nameof(InitialRank), $"must be at least 1, got {InitialRank}.");
        Require(TargetRank >= 1 && TargetRank <= InitialRank, nameof(TargetRank),
            $"must be in [1, InitialRank = {InitialRank}], got {TargetRank}.");
        Require(Alpha > 0 && double.IsFinite(Alpha), nameof(Alpha), $"must be positive, got {Alpha}.");
        Require(Dropout is >= 0 and < 1, nameof(Dropout), $"must be in [0, 1), got {Dropout}.");
        Require(InitialWarmupFraction is >= 0 and < 1, nameof(InitialWarmupFraction),
            $"must be in [0, 1), got {InitialWarmupFraction}.");
        Require(FinalFraction is >= 0 and < 1, nameof(FinalFraction), $"must be in [0, 1), got {FinalFraction}.");
        Require(InitialWarmupFraction + FinalFraction < 1, nameof(FinalFraction),
            $"plus InitialWarmupFraction must be below 1, got {InitialWarmupFraction + FinalFraction}.");
        Require(DeltaT >= 1, nameof(DeltaT), $"must be at least 1, got {DeltaT}.");
        Require(Beta1 is > 0 and < 1, nameof(Beta1), $"must be in (0, 1), got {Beta1}.");
        Require(Beta2 is > 0 and < 1, nameof(Beta2), $"must be in (0, 1), got {Beta2}.");
        Require(OrthRegWeight >= 0 && double.IsFinite(OrthRegWeight), nameof(OrthRegWeight),
            $"must be non-negative, got {OrthRegWeight}.");
        RequireTargets(TargetModules, TargetModulesPattern);
    }

    internal override void Attach(PeftModel model)
    {
        foreach (var path in TargetResolver.Resolve(model, TargetModules, TargetModulesPattern, nameof(TargetModules)))
        {
            var linear = (Linear)ModuleSurgery.Get(model, path);
            ModuleSurgery.Replace(model, path, new SvdLinear(linear, InitialRank, Alpha, Dropout));
        }
    }

    internal override Onnx.OnnxMethodExport CreateOnnxExport() => new AdaLoraOnnxExport(Alpha, InitialRank);

    internal override HuggingFace.PeftAdapterMapping CreatePeftAdapterMapping() => new AdaLoraPeftMapping(this);

    internal override bool IsTrainable(string name) =>
        name.EndsWith(".lora_A", StringComparison.Ordinal) || name.EndsWith(".lora_E", StringComparison.Ordinal)
        || name.EndsWith(".lora_B", StringComparison.Ordinal);

    internal override void OnTrainingStart(PeftModel model, ITrainingProbe probe)
    {
        _allocator?.Dispose();
        _allocator = new AdaLoraRankAllocator(this, model);
    }

    internal override void OnStepEnd(PeftModel model, int step, int totalSteps)
    {
        _allocator ??= new AdaLoraRankAllocator(this, model);
        _allocator.StepEnd(step, totalSteps);
    }

    internal override int FinalFormStep(int totalSteps) =>
        totalSteps - AdaLoraBudget.Phases(totalSteps, InitialWarmupFraction, FinalFraction).Tfinal;

    internal override Tensor? ExtraLoss(PeftModel model)
    {
        if (OrthRegWeight == 0) return null;
        using var scope = NewDisposeScope();
        Tensor? sum = null;
        int count = 0;
        foreach (var layer in AdaLoraRankAllocator.Layers(model))
        {
            // ‖QQᵀ − I‖_F for the rows of Q and ‖PᵀP − I‖_F for the columns of P, averaged over
            // matrices as peft.
            var qq = layer.lora_A.matmul(layer.lora_A.t());
            var pp = layer.lora_B.t().matmul(layer.lora_B);
            var identity = eye(qq.shape[0], dtype: qq.dtype, device: qq.device);
            var term = linalg.matrix_norm(qq - identity) + linalg.matrix_norm(pp - identity);
            sum = sum is null ? term : sum + term;
            count += 2;
        }
        if (sum is null) return null;
        return (sum * (OrthRegWeight / count)).MoveToOuterDisposeScope();
    }

    internal override void PrepareForInference(PeftModel model)
    {
        // After training: make sure the final pruning holds (e.g. after early stopping restored an earlier epoch's
        // weights).
        _allocator?.ApplyRankPattern();
        _allocator?.Dispose();
        _allocator = null;
    }

    internal override bool Merge(PeftModel model)
    {
        foreach (var layer in AdaLoraRankAllocator.Layers(model)) layer.Merge();
        return true;
    }

    internal override void Unmerge(PeftModel model)
    {
        foreach (var layer in AdaLoraRankAllocator.Layers(model)) layer.Unmerge();
    }
}
