using Microsoft.ML.Peft.Tokenization;

namespace Microsoft.ML.Peft.Inference;

/// <summary>
/// Step 1 of the data path: text (one column, or a pair) → <see cref="TokenizedText"/>, truncated to the stage's
/// maximum length. Training, validation and scoring all encode through this, so a row is tokenized alike everywhere.
/// </summary>
internal sealed class RowEncoder
{
    public RowEncoder(TextTokenizer tokenizer, int maxLength, bool pair)
    {
        Tokenizer = tokenizer;
        MaxLength = maxLength;
        IsPair = pair;
    }

    public TextTokenizer Tokenizer { get; }
    public int MaxLength { get; }

    /// <summary>True when rows are sentence pairs (every row then uses the pair layout).</summary>
    public bool IsPair { get; }

    public TokenizedText Encode(string? first, string? second) =>
        IsPair ? Tokenizer.EncodePair(first, second, MaxLength) : Tokenizer.EncodeSingle(first, MaxLength);

    /// <summary>Encodes many rows on all cores; order is preserved.</summary>
    public TokenizedText[] EncodeAll(IReadOnlyList<string?> first, IReadOnlyList<string?>? second)
    {
        var result = new TokenizedText[first.Count];
        Parallel.For(0, first.Count, i => result[i] = Encode(first[i], second?[i]));
        return result;
    }
}
