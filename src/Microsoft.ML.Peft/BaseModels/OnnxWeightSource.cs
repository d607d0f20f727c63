using Microsoft.ML.Peft.Modeling;
using Microsoft.ML.Peft.Onnx;

namespace Microsoft.ML.Peft.BaseModels;

/// <summary>
/// What the two ONNX sources (embedded in a package, or a file) share: weights converted once and cached
/// (<see cref="CachedOnnxWeights"/>) and a WordPiece vocabulary. Subclasses say where the model comes from.
/// </summary>
internal abstract class OnnxWeightSource : IWeightSource
{
    private CachedOnnxWeights? _weights;

    /// <summary>The prepared weights; set once by the subclass's constructor.</summary>
    protected CachedOnnxWeights Weights
    {
        get => _weights ?? throw new InvalidOperationException("The ONNX weights were not prepared.");
        init => _weights = value;
    }

    /// <inheritdoc/>
    public abstract BaseModelKind Kind { get; }

    /// <inheritdoc/>
    public abstract string Origin { get; }

    /// <inheritdoc/>
    public abstract string? OriginVocabPath { get; }

    /// <inheritdoc/>
    public abstract VocabularyFile Vocabulary { get; }

    /// <inheritdoc/>
    public abstract bool IsSentenceEmbedding { get; }

    /// <inheritdoc/>
    public string Description => Weights.Description;

    /// <inheritdoc/>
    public string Sha256 => Weights.Sha256;

    /// <inheritdoc/>
    public EncoderConfig Config => Weights.Config;

    /// <inheritdoc/>
    public bool HasPooler => Weights.HasPooler;

    /// <inheritdoc/>
    public string? TokenizerFolder => null;

    /// <inheritdoc/>
    public string? CacheDirectory => Weights.CacheDirectory;

    /// <inheritdoc/>
    public IReadOnlyList<string> Notes => Weights.Notes;

    /// <inheritdoc/>
    public BaseModelLoadStats PrepareStats => Weights.PrepareStats;

    /// <inheritdoc/>
    public Dictionary<string, FloatTensor> ReadWeights(out BaseModelLoadStats stats) =>
        Weights.ReadWeights(out stats);
}
