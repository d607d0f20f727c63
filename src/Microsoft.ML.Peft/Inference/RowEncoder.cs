using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Peft.Tokenization;
using Microsoft.ML.Peft.Training;

namespace Microsoft.ML.Peft.Inference;

/// <summary>
/// Step 1 of the data path: text (one column, or a pair) → <see cref="TokenizedText"/>, fitted to the stage's
/// maximum length by its long-text strategy (truncated, head and tail, or cut into windows that the row carries, see
/// <see cref="DocumentWindows"/>). Training, validation and scoring all encode through this, so a row is tokenized
/// alike everywhere.
/// </summary>
internal sealed class RowEncoder
{
    private readonly WindowPool _pool;

    /// <param name="tokenizer">The stage's tokenizer.</param>
    /// <param name="maxLength">The window: most tokens per row, special tokens included.</param>
    /// <param name="pair">True when rows are sentence pairs.</param>
    /// <param name="longText">The long-text strategy; null truncates.</param>
    /// <param name="task">Decides how a document's windows pool (probabilities or values).</param>
    public RowEncoder(TextTokenizer tokenizer, int maxLength, bool pair, LongTextSettings? longText = null,
        PeftTask task = PeftTask.Classification)
    {
        Tokenizer = tokenizer;
        MaxLength = maxLength;
        IsPair = pair;
        LongText = longText ?? LongTextSettings.Truncate;
        _pool = new WindowPool(LongText.Pooling, probabilities: task == PeftTask.Classification);
    }

    public TextTokenizer Tokenizer { get; }
    public int MaxLength { get; }

    /// <summary>True when rows are sentence pairs (every row then uses the pair layout).</summary>
    public bool IsPair { get; }

    public LongTextSettings LongText { get; }

    /// <summary>
    /// The row for a document: one window, or (SlidingWindow, a long first text) the first window carrying all of
    /// them (<see cref="TokenizedText.Document"/>).
    /// </summary>
    public TokenizedText Encode(string? first, string? second) => DocumentWindows.AsRow(Windows(first, second), _pool);

    /// <summary>
    /// The document's windows in order: one for Truncate, HeadAndTail and any text that fits; for SlidingWindow, one
    /// per start of <see cref="LongTextWindows.Starts"/>. Every window keeps the second text of a pair as truncation
    /// would and fills the first text's room from the first text.
    /// </summary>
    public TokenizedText[] Windows(string? first, string? second)
    {
        if (LongText.Strategy == LongTextStrategy.Truncate)
            return [IsPair ? Tokenizer.EncodePair(first, second, MaxLength) : Tokenizer.EncodeSingle(first, MaxLength)];
        var (a, room, b, kb) = Tokenizer.EncodeUncut(first, second, IsPair, MaxLength);
        if (a.Count <= room) return [Tokenizer.Compose(a, a.Count, b, kb, IsPair)];
        var tokens = a as int[] ?? [.. a];
        if (LongText.Strategy == LongTextStrategy.HeadAndTail)
        {
            var (head, tailStart) = LongTextWindows.HeadAndTail(tokens.Length, room, LongText.HeadTokens);
            int[] kept = [.. tokens.AsSpan(0, head), .. tokens.AsSpan(tailStart)];
            return [Tokenizer.Compose(kept, room, b, kb, IsPair)];
        }
        int stride = LongTextWindows.Stride(room, LongText.WindowStride);
        return LongTextWindows.Starts(tokens.Length, room, stride, LongText.MaxWindowsPerDocument)
            .Select(s => Tokenizer.Compose(new ArraySegment<int>(tokens, s, room), room, b, kb, IsPair))
            .ToArray();
    }

    /// <summary>Encodes many rows on all cores; order is preserved.</summary>
    public TokenizedText[] EncodeAll(IReadOnlyList<string?> first, IReadOnlyList<string?>? second)
    {
        var result = new TokenizedText[first.Count];
        Parallel.For(0, first.Count, i => result[i] = Encode(first[i], second?[i]));
        return result;
    }
}
