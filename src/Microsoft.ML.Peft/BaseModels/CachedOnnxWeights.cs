using System.Diagnostics;
using System.Security.Cryptography;
using Microsoft.ML.Peft.Modeling;
using Microsoft.ML.Peft.Onnx;

namespace Microsoft.ML.Peft.BaseModels;

/// <summary>
/// The weights of an ONNX model (embedded or a file), converted once and cached on disk under the SHA-256 of the ONNX
/// bytes (<see cref="WeightCache"/>); when the cache cannot be written, the converted weights are kept in memory.
/// Shared by <see cref="EmbeddedOnnxSource"/> and <see cref="OnnxFileSource"/>, which differ only in how they find
/// the bytes and the vocabulary.
/// </summary>
internal sealed class CachedOnnxWeights
{
    private readonly Func<Stream> _open;
    private readonly WeightCache? _cache;
    private readonly Dictionary<string, FloatTensor>? _inMemory;

    private CachedOnnxWeights(string description, Func<Stream> open, string sha256, EncoderConfig config,
                              bool hasPooler, WeightCache? cache, Dictionary<string, FloatTensor>? inMemory,
                              IReadOnlyList<string> notes, BaseModelLoadStats stats)
    {
        Description = description;
        _open = open;
        Sha256 = sha256;
        Config = config;
        HasPooler = hasPooler;
        _cache = cache;
        _inMemory = inMemory;
        Notes = notes;
        PrepareStats = stats;
    }

    /// <summary>Where the ONNX bytes come from, for messages.</summary>
    public string Description { get; }

    /// <summary>Lowercase hex SHA-256 of the ONNX bytes.</summary>
    public string Sha256 { get; }

    /// <summary>The encoder's configuration, as converted (or as cached).</summary>
    public EncoderConfig Config { get; }

    /// <summary>Whether the converted weights include a pooler.</summary>
    public bool HasPooler { get; }

    /// <summary>The cache entry folder; null when the weights are kept in memory.</summary>
    public string? CacheDirectory => _cache?.EntryDirectory(Sha256);

    /// <summary>Remarks of the importer (empty when the weights came from the cache).</summary>
    public IReadOnlyList<string> Notes { get; }

    /// <summary>How the weights were prepared: hashing, conversion or cache lookup.</summary>
    public BaseModelLoadStats PrepareStats { get; }

    /// <summary>
    /// Finds the SHA-256 of the ONNX bytes (remembered by the cache under <paramref name="sourcePath"/> and
    /// <paramref name="sourcePart"/>), then either finds a cache entry or converts the model and stores one.
    /// </summary>
    public static CachedOnnxWeights Prepare(string description, string sourcePath, string sourcePart, Func<Stream> open,
                                            string? cacheDirectory)
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
            return new CachedOnnxWeights(description, open, sha, cachedConfig!, cachedPooler, cache, null, [], stats);
        }

        var importWatch = Stopwatch.StartNew();
        if (bytes is null)
        {
            // The remembered hash may be stale (a file rewritten within the same timestamp): trust the bytes.
            bytes = ReadAll(open);
            string actual = Convert.ToHexStringLower(SHA256.HashData(bytes));
            if (actual != sha)
            {
                sha = actual;
                cache.RememberSourceHash(sourcePath, sourcePart, sha);
            }
        }
        var result = Import(bytes, description);
        bytes = null;
        importWatch.Stop();

        var writeWatch = Stopwatch.StartNew();
        string? note = problem == "no cache entry" ? null : problem;
        Dictionary<string, FloatTensor>? inMemory = null;
        try
        {
            cache.Store(sha, result.Config, result.Weights, description);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            note = (note is null ? "" : note + "; ") +
                   $"weight cache '{cache.Root}' not writable ({e.Message}); weights kept in memory";
            inMemory = result.Weights;
        }
        writeWatch.Stop();

        var loadStats = new BaseModelLoadStats
        {
            Hash = hashWatch.Elapsed, Import = importWatch.Elapsed, CacheWrite = writeWatch.Elapsed,
            Total = total.Elapsed, Note = note,
        };
        return new CachedOnnxWeights(description, open, sha, result.Config, result.HasPooler,
                                     inMemory is null ? cache : null, inMemory, result.Notes, loadStats);
    }

    /// <summary>
    /// New tensors from memory (when the cache was not writable) or from the cache entry; a missing or damaged entry
    /// is rebuilt from the ONNX bytes, which must still have <see cref="Sha256"/>.
    /// </summary>
    public Dictionary<string, FloatTensor> ReadWeights(out BaseModelLoadStats stats)
    {
        if (_inMemory is not null)
        {
            stats = new BaseModelLoadStats { Note = "weights kept in memory (cache unavailable)" };
            return _inMemory.ToDictionary(kv => kv.Key, kv => kv.Value.Clone(), StringComparer.Ordinal);
        }
        var readWatch = Stopwatch.StartNew();
        var cached = _cache!.TryLoadWeights(Sha256, out string? problem);
        if (cached is not null)
        {
            stats = new BaseModelLoadStats { FromCache = true, CacheRead = readWatch.Elapsed };
            return cached;
        }

        // Missing or damaged entry: convert again and rewrite it.
        var importWatch = Stopwatch.StartNew();
        byte[] bytes = ReadAll(_open);
        string sha = Convert.ToHexStringLower(SHA256.HashData(bytes));
        if (sha != Sha256)
            throw new InvalidOperationException($"The ONNX model '{Description}' changed since this BaseModel was " +
                                                $"created (sha256 {sha}, was {Sha256}); create it again.");
        var result = Import(bytes, Description);
        importWatch.Stop();
        var writeWatch = Stopwatch.StartNew();
        string? note = $"rebuilt: {problem}";
        try
        {
            _cache.Store(Sha256, Config, result.Weights, Description);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            note += $"; cache not writable: {e.Message}";
        }
        writeWatch.Stop();
        var weights = result.Weights;
        stats = new BaseModelLoadStats { Import = importWatch.Elapsed, CacheWrite = writeWatch.Elapsed, Note = note };
        return weights;
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
}
