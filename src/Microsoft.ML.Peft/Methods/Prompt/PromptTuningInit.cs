namespace Microsoft.ML.Peft.Methods.Prompt;

/// <summary>How the virtual tokens start (<c>peft</c>'s <c>PromptTuningInit</c>).</summary>
public enum PromptTuningInit
{
    /// <summary>N(0, 1) vectors (peft's <c>RANDOM</c>: nn.Embedding's default).</summary>
    Random,
    /// <summary>
    /// The encoder's embedding of randomly sampled vocabulary tokens (peft's <c>RANDOM_DISCRETE</c>).
    /// </summary>
    SampleVocab,
    /// <summary>
    /// The encoder's embedding of <see cref="PromptTuningConfig.InitTokenIds"/>, repeated or cut to length (peft's
    /// <c>TEXT</c>).
    /// </summary>
    Text,
}
