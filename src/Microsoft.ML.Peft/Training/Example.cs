using Microsoft.ML.Peft.Tokenization;

namespace Microsoft.ML.Peft.Training;

/// <summary>One training row: its tokens and target (class index, or the standardised regression value).</summary>
internal readonly record struct Example(TokenizedText Row, float Label)
{
    public int Length => Row.Length;

    /// <summary>Pairs encoded rows with their labels.</summary>
    public static Example[] Zip(IReadOnlyList<TokenizedText> rows, IReadOnlyList<float> labels) =>
        rows.Select((r, i) => new Example(r, labels[i])).ToArray();
}
