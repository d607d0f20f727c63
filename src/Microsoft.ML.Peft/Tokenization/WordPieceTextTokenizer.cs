using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace Microsoft.ML.Peft.Tokenization;

/// <summary>
/// BERT-family WordPiece tokenizer (BERT, MiniLM, DistilBERT, ELECTRA, ...) built on
/// <see cref="BertTokenizer"/> from Microsoft.ML.Tokenizers, with Hugging Face's BertTokenizer behaviour:
/// basic tokenization (punctuation split, optional lower-casing and accent stripping, CJK ideographs split into
/// single characters), WordPiece with the <c>##</c> continuation prefix and at most 100 characters per word.
/// Layout <c>[CLS] a [SEP]</c> / <c>[CLS] a [SEP] b [SEP]</c>; token type ids 0 up to and including the first
/// <c>[SEP]</c>, 1 after it. Thread-safe (see <see cref="TextTokenizer"/>).
/// </summary>
/// <remarks>
/// Two gaps between Microsoft.ML.Tokenizers 2.0.1 and Hugging Face are closed here: its default BERT pre-tokenizer
/// (<c>\w+|\p{P}</c>) silently drops symbols such as <c>$ + = ^ | ~ € ©</c> and emoji, which Hugging Face keeps
/// (ASCII symbols as single-character words, others inside words); and its normalizer deletes tab / CR / LF
/// (Unicode controls) instead of treating them as spaces. This class supplies a pre-tokenizer with Hugging Face's
/// punctuation rule and turns tab / CR / LF into spaces and removes format characters (Cf) before encoding.
/// </remarks>
public sealed partial class WordPieceTextTokenizer : TextTokenizer
{
    /// <summary>Vocabulary file name in a Hugging Face folder.</summary>
    public const string VocabFileName = "vocab.txt";

    private readonly BertTokenizer _bert;
    private readonly byte[] _vocabBytes;
    private readonly Dictionary<string, int> _vocab;
    private readonly int _vocabSize;

    private WordPieceTextTokenizer(BertTokenizer bert, byte[] vocabBytes, Dictionary<string, int> vocab, int vocabSize,
        TextTokenizerOptions resolved, int cls, int sep, int pad, int unk, int? mask)
        : base(TextTokenizerKind.WordPiece, resolved, cls, sep, pad, unk, mask, extraPairSeparators: 0,
            secondSegmentTypeId: 1)
    {
        _bert = bert;
        _vocabBytes = vocabBytes;
        _vocab = vocab;
        _vocabSize = vocabSize;
    }

    /// <inheritdoc/>
    public override int VocabSize => _vocabSize;

    /// <summary>The wrapped Microsoft.ML.Tokenizers tokenizer.</summary>
    public BertTokenizer InnerTokenizer => _bert;

    /// <inheritdoc/>
    public override int? TokenToId(string token)
    {
        ArgumentNullException.ThrowIfNull(token);
        return _vocab.TryGetValue(token, out int id) ? id : null;
    }

    /// <summary>
    /// Builds a tokenizer from the bytes of a <c>vocab.txt</c> (one token per line, id = line number).
    /// Unset <paramref name="options"/> take BERT defaults: lower-case, strip accents when lower-casing, split CJK,
    /// <c>[CLS] [SEP] [PAD] [UNK] [MASK]</c>, model max length 512.
    /// </summary>
    /// <exception cref="InvalidDataException">The vocabulary is empty or lacks a required special token.</exception>
    internal static WordPieceTextTokenizer Create(byte[] vocabBytes, TextTokenizerOptions? options)
    {
        ArgumentNullException.ThrowIfNull(vocabBytes);
        TextTokenizerOptions o = Defaults().OverriddenBy(options);
        o.StripAccents ??= o.LowerCase;

        (Dictionary<string, int> vocab, int size) = ParseVocab(vocabBytes);
        if (size == 0)
        {
            throw new InvalidDataException($"The WordPiece vocabulary ({VocabFileName}) is empty.");
        }
        int cls = Require(vocab, o.ClsToken!, "cls_token");
        int sep = Require(vocab, o.SepToken!, "sep_token");
        int pad = Require(vocab, o.PadToken!, "pad_token");
        int unk = Require(vocab, o.UnknownToken!, "unk_token");
        int? mask = vocab.TryGetValue(o.MaskToken!, out int m) ? m : null;
        if (mask is null)
        {
            o.MaskToken = null;
        }

        // Special tokens as the pre-tokenizer sees them: after the normalizer has lower-cased the text.
        var specialTokens = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach ((string token, int id) in
                     new[] { (o.ClsToken!, cls), (o.SepToken!, sep), (o.PadToken!, pad), (o.UnknownToken!, unk) }
                     .Concat(mask is int mi ? [(o.MaskToken!, mi)] : []))
        {
            specialTokens[o.LowerCase!.Value ? token.ToLowerInvariant() : token] = id;
        }

        var bertOptions = new BertOptions
        {
            PreTokenizer = new RegexPreTokenizer(BasicTokenizerRegex(), specialTokens),
            LowerCaseBeforeTokenization = o.LowerCase!.Value,
            RemoveNonSpacingMarks = o.StripAccents!.Value,
            IndividuallyTokenizeCjk = o.TokenizeChineseChars!.Value,
            ApplyBasicTokenization = true,
            SplitOnSpecialTokens = true,
            ClassificationToken = o.ClsToken!,
            SeparatorToken = o.SepToken!,
            PaddingToken = o.PadToken!,
            UnknownToken = o.UnknownToken!,
            // BertTokenizer requires a mask token that exists; reuse [UNK] when the vocabulary has no mask token.
            MaskingToken = o.MaskToken ?? o.UnknownToken!,
        };
        BertTokenizer bert;
        using (var stream = new MemoryStream(vocabBytes, writable: false))
        {
            bert = BertTokenizer.Create(stream, bertOptions);
        }
        return new WordPieceTextTokenizer(bert, vocabBytes, vocab, size, o, cls, sep, pad, unk, mask);
    }

    internal static TextTokenizerOptions Defaults() => new()
    {
        LowerCase = true,
        TokenizeChineseChars = true,
        ModelMaxLength = TextTokenizerOptions.DefaultModelMaxLength,
        ClsToken = "[CLS]",
        SepToken = "[SEP]",
        PadToken = "[PAD]",
        UnknownToken = "[UNK]",
        MaskToken = "[MASK]",
    };

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, byte[]> ExportFiles() =>
        new Dictionary<string, byte[]>(StringComparer.Ordinal)
        {
            [VocabFileName] = (byte[])_vocabBytes.Clone(),
            [HuggingFaceFiles.TokenizerConfigFileName] = HuggingFaceFiles.WriteTokenizerConfig(Options, Kind),
        };

    private protected override IReadOnlyList<int> EncodeAll(string text)
        => _bert.EncodeToIds(CleanText(text), addSpecialTokens: false);

    private protected override IReadOnlyList<int> EncodePrefix(string text, int maxTokenCount)
    {
        text = CleanText(text);
        IReadOnlyList<int> ids = _bert.EncodeToIds(text, maxTokenCount, addSpecialTokens: false, out string? normalized,
            out int consumed);
        // The encoder stops on word boundaries; if it stopped short of the requested count before the end of the
        // text (possible only with pathological inputs), fall back to the full encoding. Trailing whitespace is
        // never counted as consumed and yields no tokens, so it does not trigger the fallback.
        if (ids.Count < maxTokenCount && !(normalized ?? text).AsSpan(consumed).IsWhiteSpace())
        {
            return EncodeAll(text);
        }
        return ids;
    }

    /// <summary>
    /// Hugging Face BasicTokenizer words: runs of characters that are neither whitespace nor punctuation, and single
    /// punctuation characters. Punctuation is Unicode category P* plus the ASCII symbols <c>$ + &lt; = &gt; ^
    /// ` | ~</c>.
    /// </summary>
    [GeneratedRegex(@"[^\s\p{P}$+<=>^`|~]+|[\p{P}$+<=>^`|~]", RegexOptions.CultureInvariant)]
    private static partial Regex BasicTokenizerRegex();

    /// <summary>
    /// Hugging Face's clean-text step as far as Microsoft.ML.Tokenizers' normalizer does not do it: tab, CR and LF
    /// become spaces (the normalizer would delete them, gluing words together) and format characters (Cf) are removed.
    /// Returns <paramref name="text"/> itself when nothing changes.
    /// </summary>
    internal static string CleanText(string text)
    {
        int first = -1;
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (c is '\t' or '\n' or '\r' || (c >= '\u00AD' && char.GetUnicodeCategory(c) == UnicodeCategory.Format))
            {
                first = i;
                break;
            }
        }
        if (first < 0)
        {
            return text;
        }
        var sb = new StringBuilder(text.Length);
        sb.Append(text, 0, first);
        for (int i = first; i < text.Length; i++)
        {
            char c = text[i];
            if (c is '\t' or '\n' or '\r')
            {
                sb.Append(' ');
            }
            else if (c < '\u00AD' || char.GetUnicodeCategory(c) != UnicodeCategory.Format)
            {
                sb.Append(c);
            }
        }
        return sb.ToString();
    }

    /// <summary>Token → id (line number, last occurrence wins as in Hugging Face) and the line count.</summary>
    private static (Dictionary<string, int> Vocab, int Size) ParseVocab(byte[] bytes)
    {
        var vocab = new Dictionary<string, int>(32_000, StringComparer.Ordinal);
        using var reader = new StreamReader(new MemoryStream(bytes, writable: false), Encoding.UTF8,
            detectEncodingFromByteOrderMarks: true);
        int id = 0;
        string? line;
        while ((line = reader.ReadLine()) is not null)
        {
            vocab[line] = id++;
        }
        return (vocab, id);
    }

    private static int Require(Dictionary<string, int> vocab, string token, string role)
        => vocab.TryGetValue(token, out int id)
            ? id
            : throw new InvalidDataException($"The WordPiece vocabulary ({VocabFileName}) has no {role} '{token}'.");
}
