namespace Microsoft.ML.Peft.Tokenization;

/// <summary>One encoded sequence (single text or text pair) with its special tokens, not padded.</summary>
public sealed class TokenizedText
{
    /// <summary>Creates an instance; the arrays are taken as they are (not copied).</summary>
    /// <param name="inputIds">Token ids, special tokens included.</param>
    /// <param name="tokenTypeIds">Segment ids, same length as <paramref name="inputIds"/>.</param>
    /// <param name="firstSegmentLength">Number of tokens kept from the first text (specials excluded).</param>
    /// <param name="secondSegmentLength">
    /// Number of tokens kept from the second text (specials excluded); 0 for a single text.
    /// </param>
    public TokenizedText(int[] inputIds, int[] tokenTypeIds, int firstSegmentLength, int secondSegmentLength)
    {
        ArgumentNullException.ThrowIfNull(inputIds);
        ArgumentNullException.ThrowIfNull(tokenTypeIds);
        if (inputIds.Length != tokenTypeIds.Length)
        {
            throw new ArgumentException("inputIds and tokenTypeIds must have the same length.", nameof(tokenTypeIds));
        }
        InputIds = inputIds;
        TokenTypeIds = tokenTypeIds;
        FirstSegmentLength = firstSegmentLength;
        SecondSegmentLength = secondSegmentLength;
    }

    /// <summary>Token ids, special tokens included.</summary>
    public int[] InputIds { get; }

    /// <summary>Segment (token type) ids, one per token.</summary>
    public int[] TokenTypeIds { get; }

    /// <summary>Number of tokens, special tokens included.</summary>
    public int Length => InputIds.Length;

    /// <summary>Tokens kept from the first text, special tokens excluded.</summary>
    public int FirstSegmentLength { get; }

    /// <summary>Tokens kept from the second text, special tokens excluded (0 for a single text).</summary>
    public int SecondSegmentLength { get; }

    /// <summary>
    /// For a long document cut into windows (<see cref="MLNet.LongTextStrategy.SlidingWindow"/>): all its windows,
    /// this row holding the first one's tokens; null for a row that is one window.
    /// </summary>
    internal Inference.DocumentWindows? Document { get; init; }
}
