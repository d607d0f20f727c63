using System.Text;
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
public sealed class WordPieceTextTokenizer : TextTokenizer
{
    /// <summary>Vocabulary file name in a Hugging Face folder.</summary>
    public const string VocabFileName = "vocab.txt";

    private readonly BertTokenizer _bert;
    private readonly byte[] _vocabBytes;
    private readonly Dictionary<string, int> _vocab;
    private readonly int _vocabSize;

    private WordPieceTextTokenizer(BertTokenizer bert, byte[] vocabBytes, Dictionary<string, int> vocab, int vocabSize,
        TextTokenizerOptions resolved, int cls, int sep, int pad, int unk, int? mask)
        : base(TextTokenizerKind.WordPiece, resolved, cls, sep, pad, unk, mask, extraPairSeparators: 0, secondSegmentTypeId: 1)
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

        var bertOptions = new BertOptions
        {
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
    public override IReadOnlyDictionary<string, byte[]> ExportFiles() => new Dictionary<string, byte[]>(StringComparer.Ordinal)
    {
        [VocabFileName] = (byte[])_vocabBytes.Clone(),
        [HuggingFaceFiles.TokenizerConfigFileName] = HuggingFaceFiles.WriteTokenizerConfig(Options, Kind),
    };

    private protected override IReadOnlyList<int> EncodeAll(string text)
        => _bert.EncodeToIds(text, addSpecialTokens: false);

    private protected override IReadOnlyList<int> EncodePrefix(string text, int maxTokenCount)
    {
        IReadOnlyList<int> ids = _bert.EncodeToIds(text, maxTokenCount, addSpecialTokens: false, out string? normalized, out int consumed);
        // The encoder stops on word boundaries; if it stopped short of the requested count before the end of the
        // text (possible only with pathological inputs), fall back to the full encoding.
        if (ids.Count < maxTokenCount && consumed < (normalized ?? text).Length)
        {
            return EncodeAll(text);
        }
        return ids;
    }

    /// <summary>Token → id (line number, last occurrence wins as in Hugging Face) and the line count.</summary>
    private static (Dictionary<string, int> Vocab, int Size) ParseVocab(byte[] bytes)
    {
        var vocab = new Dictionary<string, int>(32_000, StringComparer.Ordinal);
        using var reader = new StreamReader(new MemoryStream(bytes, writable: false), Encoding.UTF8, detectEncodingFromByteOrderMarks: true);
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
