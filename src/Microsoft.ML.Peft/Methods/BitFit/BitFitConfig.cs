using Microsoft.ML.Peft.Modeling;

namespace Microsoft.ML.Peft.Methods.BitFit;

/// <summary>
/// BitFit (Ben Zaken et al., 2022): only the encoder's bias terms (and the task head) train; every weight matrix,
/// embedding and LayerNorm gain stays frozen. Nothing is added to the model, so the untrained model is the base model
/// and there is nothing to merge; a saved model holds only the biases and the head.
/// Trainable parameters, for L layers of width H with feed-forward width F:
/// <see cref="BitFitBiases.All"/>: <c>L · (7H + F) + 2H</c> (q, k, v, attention output, two LayerNorms and the output
/// projection give H each, the intermediate F; plus the embedding LayerNorm's H, and another H for a pooler);
/// <see cref="BitFitBiases.QueryKeyValueIntermediate"/>: <c>L · (3H + F)</c>;
/// <see cref="BitFitBiases.QueryIntermediate"/>:
/// <c>L · (H + F)</c>. For MiniLM-L6 (L 6, H 384, F 1536, no pooler): 25,728; 16,128; 11,520.
/// </summary>
public sealed class BitFitConfig : PeftMethodConfig
{
    /// <inheritdoc/>
    public override string MethodName => "bitfit";

    /// <summary>
    /// 3e-3. Biases only shift activations and are few, so they need far larger steps than full fine-tuning's 3e-5 to
    /// move the model within the few hundred steps the stage plans (the paper tuned 1e-4 to 1e-3 over many more
    /// epochs).
    /// Measured on 3,000 SST-2 rows at the stage's plan: 1e-3 0.780, 3e-3 0.799, 1e-2 0.815; but at 1e-2 the CI guard's
    /// negation task collapsed to one class (0.535), so the default stays a step below.
    /// </summary>
    public override double DefaultLearningRate => 3e-3;

    /// <summary>Which biases train. Default <see cref="BitFitBiases.All"/>.</summary>
    public BitFitBiases Biases { get; set; } = BitFitBiases.All;

    /// <inheritdoc/>
    public override void Validate() =>
        Require(Enum.IsDefined(Biases), nameof(Biases),
            $"must be one of {string.Join(", ", Enum.GetNames<BitFitBiases>())}, got {Biases}.");

    // Nothing to add: BitFit only chooses which existing parameters train.
    internal override void Attach(PeftModel model) { }

    internal override bool IsTrainable(string name)
    {
        if (!name.StartsWith("bert.", StringComparison.Ordinal) || !name.EndsWith(".bias", StringComparison.Ordinal))
            return false;
        return Biases switch
        {
            BitFitBiases.All => true,
            BitFitBiases.QueryKeyValueIntermediate =>
                name.EndsWith(".attention.self.query.bias", StringComparison.Ordinal)
                || name.EndsWith(".attention.self.key.bias", StringComparison.Ordinal)
                || name.EndsWith(".attention.self.value.bias", StringComparison.Ordinal)
                || name.EndsWith(".intermediate.dense.bias", StringComparison.Ordinal),
            _ => name.EndsWith(".attention.self.query.bias", StringComparison.Ordinal)
                || name.EndsWith(".intermediate.dense.bias", StringComparison.Ordinal),
        };
    }
}
