using Microsoft.ML.Peft.Modeling;

namespace Microsoft.ML.Peft.Methods.LayerNormTuning;

/// <summary>
/// LayerNorm tuning (LN-tuning, Qi et al., 2022; <c>peft</c>'s <c>LNTuningConfig</c>): only the gains and biases of the
/// encoder's LayerNorms (and the task head) train. Nothing is added, so the untrained model is the base model and there
/// is nothing to merge; a saved model holds only the LayerNorm vectors and the head.
/// Trainable parameters, for L layers of width H: <c>4H · L</c> (two LayerNorms per layer, gain and bias each), plus
/// <c>2H</c> for the embedding LayerNorm when <see cref="IncludeEmbeddingLayerNorm"/> is set.
/// For MiniLM-L6 (L 6, H 384): 9,216 + 768 = 9,984.
/// </summary>
/// <remarks>
/// <c>peft</c> trains a copy of each LayerNorm (<c>ln_tuning_layers</c>) so several adapters can share a base model;
/// here the LayerNorms themselves train, so saved tensors keep the base names
/// (<c>...attention.output.LayerNorm.weight</c>).
/// </remarks>
public sealed class LayerNormTuningConfig : PeftMethodConfig
{
    /// <inheritdoc/>
    public override string MethodName => "layernorm";

    /// <summary>
    /// 1e-2: like BitFit's biases, a gain or bias vector moves every activation of a layer at once and there are few of
    /// them, so they need steps well above full fine-tuning's 3e-5. Measured on 3,000 SST-2 rows at the stage's plan:
    /// 1e-3 0.798, 3e-3 0.819, 1e-2 0.825.
    /// </summary>
    public override double DefaultLearningRate => 1e-2;

    /// <summary>Also train the LayerNorm after the embeddings (<c>embeddings.LayerNorm</c>). Default true.</summary>
    public bool IncludeEmbeddingLayerNorm { get; set; } = true;

    /// <inheritdoc/>
    public override void Validate() { }

    // Nothing to add: LN-tuning only chooses which existing parameters train.
    internal override void Attach(PeftModel model) { }

    internal override bool IsTrainable(string name) =>
        name.StartsWith("bert.", StringComparison.Ordinal)
        && (name.EndsWith(".LayerNorm.weight", StringComparison.Ordinal)
            || name.EndsWith(".LayerNorm.bias", StringComparison.Ordinal))
        && (IncludeEmbeddingLayerNorm || !name.StartsWith("bert.embeddings.", StringComparison.Ordinal));
}
