namespace Microsoft.ML.Peft.Tokenization;

// What long-text strategies need from a tokenizer: a text's tokens before any cut, and a row built from tokens chosen
// elsewhere, with the same special-token layout EncodeSingle and EncodePair write.
public abstract partial class TextTokenizer
{
    /// <summary>
    /// The first text's tokens in full (no special tokens, never cut), the second text's (pair only), and the room
    /// each gets in a row of <paramref name="maxLength"/>: what <see cref="EncodeSingle"/> or
    /// <see cref="EncodePair"/> would keep. A single text's room is <c>maxLength − 2</c>; a pair's two rooms are
    /// Hugging Face's <c>longest_first</c> lengths, so a window of a long first text leaves the second text as
    /// truncation would. The first text was cut by truncation exactly when it is longer than its room.
    /// </summary>
    internal (IReadOnlyList<int> First, int FirstRoom, IReadOnlyList<int> Second, int SecondKept) EncodeUncut(
        string? first, string? second, bool pair, int maxLength)
    {
        CheckMaxLength(maxLength, pair);
        IReadOnlyList<int> a = EncodeWithoutSpecialTokens(first);
        if (!pair) return (a, maxLength - SpecialTokenCountSingle, Array.Empty<int>(), 0);
        int budget = maxLength - SpecialTokenCountPair;
        IReadOnlyList<int> b = EncodeBounded(second, budget);
        (int ka, int kb) = LongestFirstLengths(Math.Min(a.Count, budget), Math.Min(b.Count, budget), budget);
        return (a, ka, b, kb);
    }

    /// <summary>
    /// The row of the first <paramref name="ka"/> tokens of <paramref name="a"/> (and, for a pair, the first
    /// <paramref name="kb"/> of <paramref name="b"/>) with this tokenizer's special tokens and token types.
    /// </summary>
    internal TokenizedText Compose(IReadOnlyList<int> a, int ka, IReadOnlyList<int> b, int kb, bool pair)
    {
        int len = ka + kb + (pair ? SpecialTokenCountPair : SpecialTokenCountSingle);
        var ids = new int[len];
        var types = new int[len];
        WriteRow<int>(ids, types, a, ka, b, kb, pair);
        return new TokenizedText(ids, types, ka, kb);
    }
}
