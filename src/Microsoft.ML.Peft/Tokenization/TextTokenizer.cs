using System.Numerics;
using System.Runtime.InteropServices;

namespace Microsoft.ML.Peft.Tokenization;

/// <summary>
/// Turns raw text (or text pairs) into the id sequences a pretrained transformer encoder expects, with the
/// checkpoint's special tokens, truncation and padding. Concrete tokenizers wrap <c>Microsoft.ML.Tokenizers</c>:
/// <see cref="WordPieceTextTokenizer"/> (BERT family) and <see cref="ByteLevelBpeTextTokenizer"/> (RoBERTa family).
/// </summary>
/// <remarks>
/// <para>Truncation follows Hugging Face: a single text keeps its first <c>maxLength - 2</c> tokens; a pair is cut with
/// the <c>longest_first</c> strategy (one token at a time from the end of the currently longer segment, the second
/// segment on ties) until it fits. Text of any length is accepted; it is truncated, never rejected. A
/// <see langword="null"/> or empty text encodes to its special tokens only.</para>
/// <para>Thread safety: instances are immutable after creation and every encoding method can be called
/// concurrently from several threads (the wrapped Microsoft.ML.Tokenizers encoders are thread-safe; their
/// internal caches are lock-protected). Encoding a batch runs on the calling thread; callers that want parallelism
/// encode different batches on different threads.</para>
/// </remarks>
public abstract partial class TextTokenizer
{
    /// <summary>Extra tokens requested from the underlying encoder beyond the truncation budget, so that a
    /// word-aligned early stop still yields at least the budget (a WordPiece word has at most 100
    /// sub-tokens).</summary>
    private const int EncodeSlack = 128;

    private readonly int _extraPairSeparators;
    private readonly int _secondSegmentTypeId;
    private readonly TextTokenizerOptions _options;

    private protected TextTokenizer(
        TextTokenizerKind kind,
        TextTokenizerOptions resolvedOptions,
        int clsTokenId,
        int sepTokenId,
        int padTokenId,
        int unknownTokenId,
        int? maskTokenId,
        int extraPairSeparators,
        int secondSegmentTypeId)
    {
        Kind = kind;
        _options = resolvedOptions.Clone();
        ModelMaxLength = resolvedOptions.ModelMaxLength ?? TextTokenizerOptions.DefaultModelMaxLength;
        ClsTokenId = clsTokenId;
        SepTokenId = sepTokenId;
        PadTokenId = padTokenId;
        UnknownTokenId = unknownTokenId;
        MaskTokenId = maskTokenId;
        _extraPairSeparators = extraPairSeparators;
        _secondSegmentTypeId = secondSegmentTypeId;
    }

    /// <summary>The tokenization algorithm family.</summary>
    public TextTokenizerKind Kind { get; }

    /// <summary>
    /// Id of the token that starts every sequence: <c>[CLS]</c> (WordPiece) or <c>&lt;s&gt;</c> (BPE, the BOS token).
    /// </summary>
    public int ClsTokenId { get; }

    /// <summary>
    /// Id of the token that ends each segment: <c>[SEP]</c> (WordPiece) or <c>&lt;/s&gt;</c> (BPE, the EOS token).
    /// </summary>
    public int SepTokenId { get; }

    /// <summary>Id used to pad rows in <see cref="EncodeBatch"/>: <c>[PAD]</c> or <c>&lt;pad&gt;</c>.</summary>
    public int PadTokenId { get; }

    /// <summary>Id of the unknown token: <c>[UNK]</c> or <c>&lt;unk&gt;</c>.</summary>
    public int UnknownTokenId { get; }

    /// <summary>
    /// Id of the mask token (<c>[MASK]</c> / <c>&lt;mask&gt;</c>), or <see langword="null"/> when the vocabulary has
    /// none.
    /// </summary>
    public int? MaskTokenId { get; }

    /// <summary>
    /// Number of rows of the model's token embedding matrix this vocabulary addresses (largest id + 1).
    /// </summary>
    public abstract int VocabSize { get; }

    /// <summary>
    /// Longest sequence (special tokens included) the checkpoint was trained for; the default maximum length of
    /// <see cref="EncodeSingle"/> and <see cref="EncodePair"/>.
    /// </summary>
    public int ModelMaxLength { get; }

    /// <summary>Whether the text is lower-cased before tokenization.</summary>
    public bool LowerCase => _options.LowerCase ?? false;

    /// <summary>A copy of the resolved settings (every value filled in) this tokenizer was built with.</summary>
    public TextTokenizerOptions Options => _options.Clone();

    /// <summary>Number of special tokens added around a single text (2).</summary>
    public int SpecialTokenCountSingle => 2;

    /// <summary>
    /// Number of special tokens added around a text pair: 3 for WordPiece, 4 for RoBERTa's <c>&lt;/s&gt;&lt;/s&gt;</c>
    /// separator.
    /// </summary>
    public int SpecialTokenCountPair => 3 + _extraPairSeparators;

    /// <summary>
    /// The id of <paramref name="token"/> in the vocabulary (exact string, as stored in the vocabulary file), or
    /// <see langword="null"/>.
    /// </summary>
    public abstract int? TokenToId(string token);

    /// <summary>Tokenizes <paramref name="text"/> without special tokens and without truncation.</summary>
    public IReadOnlyList<int> EncodeWithoutSpecialTokens(string? text)
        => string.IsNullOrEmpty(text) ? Array.Empty<int>() : EncodeAll(Utf16Repair.Repair(text));

    /// <summary>
    /// The vocabulary and settings as Hugging Face-format files (file name → bytes), enough for
    /// <see cref="Load(IReadOnlyDictionary{string, byte[]}, TextTokenizerKind)"/> to rebuild an identical tokenizer.
    /// </summary>
    public abstract IReadOnlyDictionary<string, byte[]> ExportFiles();

    /// <summary>
    /// Writes <see cref="ExportFiles"/> into <paramref name="directory"/> (created if needed), making it loadable with
    /// <see cref="FromPretrained"/>.
    /// </summary>
    public void SaveFiles(string directory)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        Directory.CreateDirectory(directory);
        foreach (KeyValuePair<string, byte[]> f in ExportFiles())
        {
            File.WriteAllBytes(Path.Combine(directory, f.Key), f.Value);
        }
    }

    /// <summary>Full encoding of a non-empty text, no special tokens.</summary>
    private protected abstract IReadOnlyList<int> EncodeAll(string text);

    /// <summary>
    /// Encoding of a non-empty text, no special tokens, allowed to stop early: the result must be a prefix of
    /// <see cref="EncodeAll"/> holding at least <c>min(maxTokenCount, full length)</c> tokens.
    /// </summary>
    private protected abstract IReadOnlyList<int> EncodePrefix(string text, int maxTokenCount);

    /// <summary>
    /// Encodes one text as <c>CLS text SEP</c>, truncated to <paramref name="maxLength"/> tokens (default
    /// <see cref="ModelMaxLength"/>) special tokens included. Token type ids are all 0.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">
    /// <paramref name="maxLength"/> cannot hold the special tokens.
    /// </exception>
    public TokenizedText EncodeSingle(string? text, int? maxLength = null)
    {
        int max = maxLength ?? ModelMaxLength;
        CheckMaxLength(max, pair: false);
        (IReadOnlyList<int> a, int ka, _, _) = EncodeRow(text, null, pair: false, max);
        return Compose(a, ka, Array.Empty<int>(), 0, pair: false);
    }

    /// <summary>
    /// Encodes a text pair (<c>[CLS] a [SEP] b [SEP]</c> or <c>&lt;s&gt; a &lt;/s&gt;&lt;/s&gt; b &lt;/s&gt;</c>),
    /// truncated with <c>longest_first</c> to <paramref name="maxLength"/> tokens (default
    /// <see cref="ModelMaxLength"/>) special tokens included. WordPiece token type ids are 0 for <c>[CLS] a [SEP]</c>
    /// and 1 for <c>b [SEP]</c>; RoBERTa's are all 0.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">
    /// <paramref name="maxLength"/> cannot hold the special tokens.
    /// </exception>
    public TokenizedText EncodePair(string? first, string? second, int? maxLength = null)
    {
        int max = maxLength ?? ModelMaxLength;
        CheckMaxLength(max, pair: true);
        (IReadOnlyList<int> a, int ka, IReadOnlyList<int> b, int kb) = EncodeRow(first, second, pair: true, max);
        return Compose(a, ka, b, kb, pair: true);
    }

    /// <summary>
    /// Encodes a batch of single texts (<paramref name="second"/> null) or text pairs, each row truncated to
    /// <paramref name="maxLength"/> tokens (special tokens included) and padded with <see cref="PadTokenId"/> to the
    /// longest row of the batch. In pair mode every row uses the pair layout, a null/empty second text giving an empty
    /// second segment.
    /// </summary>
    /// <exception cref="ArgumentException">The two lists differ in length.</exception>
    /// <exception cref="ArgumentOutOfRangeException">
    /// <paramref name="maxLength"/> cannot hold the special tokens.
    /// </exception>
    public TokenBatch EncodeBatch(IReadOnlyList<string?> first, IReadOnlyList<string?>? second, int maxLength)
    {
        ArgumentNullException.ThrowIfNull(first);
        bool pair = second is not null;
        if (pair && second!.Count != first.Count)
        {
            throw new ArgumentException($"The second list has {second.Count} texts but the first has {first.Count}.",
                nameof(second));
        }
        CheckMaxLength(maxLength, pair);
        var rows = new TokenizedText[first.Count];
        for (int i = 0; i < rows.Length; i++)
            rows[i] = pair ? EncodePair(first[i], second![i], maxLength) : EncodeSingle(first[i], maxLength);
        return TokenBatch.FromRows(rows, PadTokenId);
    }

    /// <summary>
    /// Final segment lengths after Hugging Face's <c>longest_first</c> truncation of segments of
    /// <paramref name="firstLength"/> and <paramref name="secondLength"/> tokens to <paramref name="budget"/> tokens in
    /// total: one token at a time is removed from the longer segment, from the second one on ties. Computed in O(1).
    /// </summary>
    public static (int First, int Second) LongestFirstLengths(int firstLength, int secondLength, int budget)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(firstLength);
        ArgumentOutOfRangeException.ThrowIfNegative(secondLength);
        ArgumentOutOfRangeException.ThrowIfNegative(budget);
        long remove = (long)firstLength + secondLength - budget;
        if (remove <= 0)
        {
            return (firstLength, secondLength);
        }
        int a = firstLength, b = secondLength;
        int gap = Math.Abs(a - b);
        int step = (int)Math.Min(gap, remove);
        if (a > b)
        {
            a -= step;
        }
        else
        {
            b -= step;
        }
        remove -= step;
        if (remove > 0)
        {
            // Equal lengths now: removals alternate, starting with the second segment.
            b -= (int)((remove + 1) / 2);
            a -= (int)(remove / 2);
        }
        return (a, b);
    }

    private void CheckMaxLength(int maxLength, bool pair)
    {
        int specials = pair ? SpecialTokenCountPair : SpecialTokenCountSingle;
        if (maxLength < specials)
        {
            throw new ArgumentOutOfRangeException(nameof(maxLength), maxLength,
                $"maxLength must be at least {specials}, " +
                $"the number of special tokens of a {(pair ? "text pair" : "single text")}.");
        }
    }

    private (IReadOnlyList<int> A, int KeptA, IReadOnlyList<int> B, int KeptB) EncodeRow(
        string? a, string? b, bool pair, int maxLength)
    {
        if (!pair)
        {
            int budget = maxLength - SpecialTokenCountSingle;
            IReadOnlyList<int> ta = EncodeBounded(a, budget);
            return (ta, Math.Min(ta.Count, budget), Array.Empty<int>(), 0);
        }
        else
        {
            // Capping each segment's encoding at the whole budget does not change the longest_first outcome:
            // a segment longer than the budget is always cut below it.
            int budget = maxLength - SpecialTokenCountPair;
            IReadOnlyList<int> ta = EncodeBounded(a, budget);
            IReadOnlyList<int> tb = EncodeBounded(b, budget);
            (int ka, int kb) = LongestFirstLengths(Math.Min(ta.Count, budget), Math.Min(tb.Count, budget), budget);
            return (ta, ka, tb, kb);
        }
    }

    private IReadOnlyList<int> EncodeBounded(string? text, int budget)
    {
        if (string.IsNullOrEmpty(text) || budget == 0)
        {
            return Array.Empty<int>();
        }
        int cap = budget > int.MaxValue - EncodeSlack ? int.MaxValue : budget + EncodeSlack;
        // Lone surrogates would make the normaliser throw; repair them here, the one way every row comes in.
        return EncodePrefix(Utf16Repair.Repair(text), cap);
    }

    private void WriteRow<T>(Span<T> ids, Span<T> types, IReadOnlyList<int> a, int ka, IReadOnlyList<int> b, int kb,
        bool pair)
        where T : struct, IBinaryInteger<T>
    {
        T sep = T.CreateTruncating(SepTokenId);
        int p = 0;
        ids[p++] = T.CreateTruncating(ClsTokenId);
        p = CopyIds(ids, p, a, ka);
        ids[p++] = sep;
        types[..p].Clear();
        if (!pair)
        {
            return;
        }
        for (int j = 0; j < _extraPairSeparators; j++)
        {
            ids[p++] = sep;
        }
        int secondStart = p;
        p = CopyIds(ids, p, b, kb);
        ids[p++] = sep;
        types[..secondStart].Clear();
        types[secondStart..p].Fill(T.CreateTruncating(_secondSegmentTypeId));
    }

    private static int CopyIds<T>(Span<T> dest, int p, IReadOnlyList<int> src, int count)
        where T : struct, IBinaryInteger<T>
    {
        ReadOnlySpan<int> span = src switch
        {
            int[] arr => arr,
            List<int> list => CollectionsMarshal.AsSpan(list),
            _ => default,
        };
        if (span.Length >= count)
        {
            for (int i = 0; i < count; i++)
            {
                dest[p++] = T.CreateTruncating(span[i]);
            }
        }
        else
        {
            for (int i = 0; i < count; i++)
            {
                dest[p++] = T.CreateTruncating(src[i]);
            }
        }
        return p;
    }
}
