using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Microsoft.ML.Tokenizers;

namespace Microsoft.ML.Peft.Tokenization;

/// <summary>
/// RoBERTa-family byte-level BPE tokenizer (GPT-2 pre-tokenization regex, bytes mapped to printable characters,
/// <c>Ġ</c> marking a leading space) built on <see cref="BpeTokenizer"/> from Microsoft.ML.Tokenizers with
/// <see cref="RobertaPreTokenizer"/>. Ids are those of the <c>vocab.json</c> it was built from; when built from
/// fairseq's GPT-2 files (<c>encoder.json</c>, <c>vocab.bpe</c>, <c>dict.txt</c>) they are remapped to the ids of
/// Hugging Face's roberta-base (<c>&lt;s&gt;</c>=0, <c>&lt;pad&gt;</c>=1, <c>&lt;/s&gt;</c>=2, <c>&lt;unk&gt;</c>=3,
/// then 4 + the token's row in <c>dict.txt</c>, <c>&lt;mask&gt;</c> last).
/// Layout <c>&lt;s&gt; a &lt;/s&gt;</c> / <c>&lt;s&gt; a &lt;/s&gt;&lt;/s&gt; b &lt;/s&gt;</c>; all token type ids 0.
/// Special-token strings inside the text are tokenized as plain text. Thread-safe (see <see cref="TextTokenizer"/>).
/// </summary>
public sealed class ByteLevelBpeTextTokenizer : TextTokenizer
{
    /// <summary>Vocabulary file name (token → id JSON object) in a Hugging Face folder.</summary>
    public const string VocabFileName = "vocab.json";

    /// <summary>
    /// Merges file name (one <c>left right</c> pair per line, after a <c>#version</c> header) in a Hugging Face folder.
    /// </summary>
    public const string MergesFileName = "merges.txt";

    private readonly BpeTokenizer _bpe;
    private readonly byte[] _vocabJson;
    private readonly byte[] _merges;
    private readonly Dictionary<string, int> _vocab;
    private readonly int _vocabSize;

    private ByteLevelBpeTextTokenizer(BpeTokenizer bpe, byte[] vocabJson, byte[] merges, Dictionary<string, int> vocab,
        TextTokenizerOptions resolved, int cls, int sep, int pad, int unk, int? mask)
        : base(TextTokenizerKind.ByteLevelBpe, resolved, cls, sep, pad, unk, mask, extraPairSeparators: 1,
            secondSegmentTypeId: 0)
    {
        _bpe = bpe;
        _vocabJson = vocabJson;
        _merges = merges;
        _vocab = vocab;
        int max = -1;
        foreach (int id in vocab.Values)
        {
            max = Math.Max(max, id);
        }
        _vocabSize = max + 1;
    }

    /// <inheritdoc/>
    public override int VocabSize => _vocabSize;

    /// <summary>The wrapped Microsoft.ML.Tokenizers tokenizer.</summary>
    public BpeTokenizer InnerTokenizer => _bpe;

    /// <inheritdoc/>
    public override int? TokenToId(string token)
    {
        ArgumentNullException.ThrowIfNull(token);
        return _vocab.TryGetValue(token, out int id) ? id : null;
    }

    internal static TextTokenizerOptions Defaults() => new()
    {
        LowerCase = false,
        ModelMaxLength = TextTokenizerOptions.DefaultModelMaxLength,
        ClsToken = "<s>",
        SepToken = "</s>",
        PadToken = "<pad>",
        UnknownToken = "<unk>",
        MaskToken = "<mask>",
    };

    /// <summary>Builds a tokenizer from the bytes of a Hugging Face <c>vocab.json</c> and <c>merges.txt</c>.</summary>
    /// <exception cref="InvalidDataException">A file is malformed or a required special token is missing.</exception>
    internal static ByteLevelBpeTextTokenizer Create(byte[] vocabJson, byte[] merges, TextTokenizerOptions? options)
    {
        ArgumentNullException.ThrowIfNull(vocabJson);
        ArgumentNullException.ThrowIfNull(merges);
        TextTokenizerOptions o = Defaults().OverriddenBy(options);
        o.StripAccents = null;
        o.TokenizeChineseChars = null;

        Dictionary<string, int> vocab;
        try
        {
            vocab = JsonSerializer.Deserialize<Dictionary<string, int>>(vocabJson)
                ?? throw new InvalidDataException($"{VocabFileName} is empty.");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{VocabFileName} is not a JSON object of token → id: {e.Message}", e);
        }
        if (vocab.Count == 0)
        {
            throw new InvalidDataException($"{VocabFileName} holds no tokens.");
        }
        List<string> mergeLines = ParseMerges(merges);

        int cls = Require(vocab, o.ClsToken!, "cls_token (bos)");
        int sep = Require(vocab, o.SepToken!, "sep_token (eos)");
        int pad = Require(vocab, o.PadToken!, "pad_token");
        int unk = Require(vocab, o.UnknownToken!, "unk_token");
        int? mask = vocab.TryGetValue(o.MaskToken!, out int m) ? m : null;
        if (mask is null)
        {
            o.MaskToken = null;
        }

        var bpeOptions = new BpeOptions(vocab)
        {
            Merges = mergeLines,
            PreTokenizer = RobertaPreTokenizer.Instance,
            Normalizer = o.LowerCase == true ? new LowerCaseNormalizer() : null,
            ByteLevel = true,
        };
        BpeTokenizer bpe = BpeTokenizer.Create(bpeOptions);
        return new ByteLevelBpeTextTokenizer(bpe, vocabJson,
            Encoding.UTF8.GetBytes(string.Join('\n', mergeLines.Prepend("#version: 0.2")) + "\n"),
            vocab, o, cls, sep, pad, unk, mask);
    }

    /// <summary>
    /// Builds a tokenizer from fairseq's GPT-2 BPE files as used by fairseq RoBERTa (and embedded in
    /// Microsoft.ML.TorchSharp): <c>encoder.json</c> (token → GPT-2 id), <c>vocab.bpe</c> (merges) and
    /// <c>dict.txt</c> (one <c>GPT-2-id count</c> line per model row, most frequent first). The ids are remapped
    /// as fairseq does: <c>&lt;s&gt;</c>=0, <c>&lt;pad&gt;</c>=1, <c>&lt;/s&gt;</c>=2, <c>&lt;unk&gt;</c>=3, a token
    /// listed on row r of <c>dict.txt</c> gets 4 + r, <c>&lt;mask&gt;</c> follows the last row — the ids of Hugging
    /// Face's roberta-base (vocabulary size 50265). GPT-2 tokens missing from <c>dict.txt</c> map to
    /// <c>&lt;unk&gt;</c>.
    /// </summary>
    internal static ByteLevelBpeTextTokenizer CreateFromFairseq(byte[] encoderJson, byte[] vocabBpe, byte[] dictTxt,
        TextTokenizerOptions? options)
    {
        ArgumentNullException.ThrowIfNull(encoderJson);
        ArgumentNullException.ThrowIfNull(vocabBpe);
        ArgumentNullException.ThrowIfNull(dictTxt);
        Dictionary<string, int> encoder;
        try
        {
            encoder = JsonSerializer.Deserialize<Dictionary<string, int>>(encoderJson)
                ?? throw new InvalidDataException("encoder.json is empty.");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"encoder.json is not a JSON object of token → id: {e.Message}", e);
        }

        const int FirstDictId = 4;
        var rowOfGpt2Id = new Dictionary<int, int>(encoder.Count);
        var extraSymbols = new List<(string Token, int Id)>();
        int row = 0;
        foreach (string line in ReadLines(dictTxt))
        {
            string trimmed = line.Trim();
            if (trimmed.Length == 0)
            {
                continue;
            }
            int space = trimmed.IndexOf(' ');
            string symbol = space < 0 ? trimmed : trimmed[..space];
            int id = FirstDictId + row++;
            if (int.TryParse(symbol, NumberStyles.None, CultureInfo.InvariantCulture, out int gpt2Id))
            {
                rowOfGpt2Id.TryAdd(gpt2Id, id);
            }
            else
            {
                extraSymbols.Add((symbol, id)); // e.g. fairseq's padding entries "madeupword0000"
            }
        }
        if (row == 0)
        {
            throw new InvalidDataException("dict.txt holds no entries.");
        }

        var vocab = new Dictionary<string, int>(encoder.Count + 8, StringComparer.Ordinal)
        {
            ["<s>"] = 0,
            ["<pad>"] = 1,
            ["</s>"] = 2,
            ["<unk>"] = 3,
        };
        foreach (KeyValuePair<string, int> kv in encoder)
        {
            vocab.TryAdd(kv.Key, rowOfGpt2Id.TryGetValue(kv.Value, out int id) ? id : 3);
        }
        foreach ((string token, int id) in extraSymbols)
        {
            vocab.TryAdd(token, id);
        }
        vocab.TryAdd("<mask>", FirstDictId + row);

        return Create(WriteVocabJson(vocab), vocabBpe, options);
    }

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, byte[]> ExportFiles() =>
        new Dictionary<string, byte[]>(StringComparer.Ordinal)
        {
            [VocabFileName] = (byte[])_vocabJson.Clone(),
            [MergesFileName] = (byte[])_merges.Clone(),
            [HuggingFaceFiles.TokenizerConfigFileName] = HuggingFaceFiles.WriteTokenizerConfig(Options, Kind),
        };

    private protected override IReadOnlyList<int> EncodeAll(string text)
        => _bpe.EncodeToIds(text);

    private protected override IReadOnlyList<int> EncodePrefix(string text, int maxTokenCount)
    {
        IReadOnlyList<int> ids = _bpe.EncodeToIds(text, maxTokenCount, out string? normalized, out int consumed);
        // The encoder stops on pre-token (word) boundaries; a single very long word can leave it short of the
        // requested count before the end of the text: then encode everything.
        if (ids.Count < maxTokenCount && consumed < (normalized ?? text).Length)
        {
            return EncodeAll(text);
        }
        return ids;
    }

    /// <summary>
    /// Merge rules of a merges.txt / vocab.bpe: header (<c>#version</c>) and blank lines dropped, CR/LF tolerant.
    /// </summary>
    private static List<string> ParseMerges(byte[] merges)
    {
        var lines = new List<string>(50_000);
        int lineNo = 0;
        foreach (string raw in ReadLines(merges))
        {
            lineNo++;
            string line = raw.TrimEnd('\r', '\n');
            if (line.Length == 0 || (lineNo == 1 && line.StartsWith("#version", StringComparison.Ordinal)))
            {
                continue;
            }
            int space = line.IndexOf(' ');
            if (space <= 0 || space == line.Length - 1 || line.IndexOf(' ', space + 1) >= 0)
            {
                throw new InvalidDataException(
                    $"{MergesFileName} line {lineNo} is not a 'left right' pair: \"{line}\".");
            }
            lines.Add(line);
        }
        return lines;
    }

    private static IEnumerable<string> ReadLines(byte[] bytes)
    {
        using var reader = new StreamReader(new MemoryStream(bytes, writable: false), Encoding.UTF8,
            detectEncodingFromByteOrderMarks: true);
        string? line;
        while ((line = reader.ReadLine()) is not null)
        {
            yield return line;
        }
    }

    private static byte[] WriteVocabJson(Dictionary<string, int> vocab)
    {
        using var ms = new MemoryStream(1 << 20);
        using (var w = new Utf8JsonWriter(ms,
            new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            foreach (KeyValuePair<string, int> kv in vocab.OrderBy(kv => kv.Value)
                .ThenBy(kv => kv.Key, StringComparer.Ordinal))
            {
                w.WriteNumber(kv.Key, kv.Value);
            }
            w.WriteEndObject();
        }
        return ms.ToArray();
    }

    private static int Require(Dictionary<string, int> vocab, string token, string role)
        => vocab.TryGetValue(token, out int id)
            ? id
            : throw new InvalidDataException($"The BPE vocabulary ({VocabFileName}) has no {role} '{token}'.");
}
