using Microsoft.ML.Peft.Modeling;
using Microsoft.ML.Peft.Onnx;

namespace Microsoft.ML.Peft.BaseModels;

/// <summary>
/// Weights held in memory, read back from a self-contained model zip (see <see cref="BaseModelResolver"/>). The
/// fingerprint is the one the zip recorded; the original file need not exist any more.
/// </summary>
internal sealed class StoredWeightSource : IWeightSource
{
    private readonly Dictionary<string, FloatTensor> _weights;

    /// <summary>Takes ownership of <paramref name="weights"/>.</summary>
    public StoredWeightSource(string sha256, EncoderConfig config, Dictionary<string, FloatTensor> weights,
                              VocabularyFile vocabulary, string origin)
    {
        Sha256 = sha256;
        Config = config;
        _weights = weights;
        HasPooler = weights.ContainsKey("pooler.dense.weight");
        Vocabulary = vocabulary;
        Origin = origin;
    }

    /// <inheritdoc/>
    public BaseModelKind Kind => BaseModelKind.Stored;

    /// <inheritdoc/>
    public string Origin { get; }

    /// <inheritdoc/>
    public string? OriginVocabPath => null;

    /// <inheritdoc/>
    public string Description => Origin;

    /// <inheritdoc/>
    public string Sha256 { get; }

    /// <inheritdoc/>
    public EncoderConfig Config { get; }

    /// <inheritdoc/>
    public bool HasPooler { get; }

    /// <inheritdoc/>
    public VocabularyFile Vocabulary { get; }

    /// <inheritdoc/>
    public string? TokenizerFolder => null;

    /// <inheritdoc/>
    public bool IsSentenceEmbedding => false;

    /// <inheritdoc/>
    public string? CacheDirectory => null;

    /// <inheritdoc/>
    public IReadOnlyList<string> Notes => [];

    /// <inheritdoc/>
    public BaseModelLoadStats PrepareStats { get; } = new();

    /// <inheritdoc/>
    public Dictionary<string, FloatTensor> ReadWeights(out BaseModelLoadStats stats)
    {
        // Copies, so the caller may dispose what it gets while this source keeps serving later loads.
        stats = new BaseModelLoadStats { Note = "weights kept in memory (cache unavailable)" };
        return _weights.ToDictionary(kv => kv.Key, kv => kv.Value.Clone(), StringComparer.Ordinal);
    }
}
