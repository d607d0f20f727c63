using Microsoft.ML.Peft.Tokenization;

namespace Microsoft.ML.Peft.Inference;

/// <summary>
/// Step 3 of the data path, the seam where a scoring engine plugs in: encoded rows → the head's raw outputs
/// (class logits, or the standardised regression value), one array per row in the order given. An engine plans its
/// own batches (by length, within its token budget); <see cref="HeadOutputs"/> turns raw outputs into the stage's
/// columns the same way for every engine. <see cref="TorchScorer"/> is the libtorch engine.
/// </summary>
internal interface IScorer
{
    /// <summary>Raw head outputs for <paramref name="rows"/>: [rows][outputs].</summary>
    float[][] Score(IReadOnlyList<TokenizedText> rows);
}
