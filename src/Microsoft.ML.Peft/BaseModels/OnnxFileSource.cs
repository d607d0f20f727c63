using Microsoft.ML.Peft.Modeling;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.BaseModels;

/// <summary>
/// An ONNX export of a BERT-family encoder on disk with its WordPiece vocabulary file. Saved models record both paths
/// (or store the weights).
/// </summary>
internal sealed class OnnxFileSource : IWeightSource
{
    private readonly CachedOnnxWeights _weights;

    /// <summary>Checks that both files exist, reads the vocabulary and prepares the (cached) weights.</summary>
    /// <param name="onnxPath">The <c>.onnx</c> file (weights inside it).</param>
    /// <param name="vocabPath">The tokenizer vocabulary (<c>vocab.txt</c>).</param>
    /// <param name="doLowerCase">Whether the tokenizer lower-cases; null infers it from the vocabulary.</param>
    /// <param name="cacheDirectory">Weight cache folder; null for the default.</param>
    public OnnxFileSource(string onnxPath, string vocabPath, bool? doLowerCase, string? cacheDirectory)
    {
        ArgumentException.ThrowIfNullOrEmpty(onnxPath);
        ArgumentException.ThrowIfNullOrEmpty(vocabPath);
        onnxPath = Path.GetFullPath(onnxPath);
        vocabPath = Path.GetFullPath(vocabPath);
        if (!File.Exists(onnxPath))
            throw new FileNotFoundException($"ONNX model '{onnxPath}' does not exist.", onnxPath);
        if (!File.Exists(vocabPath))
            throw new FileNotFoundException($"Vocabulary '{vocabPath}' does not exist.", vocabPath);
        byte[] vocab = File.ReadAllBytes(vocabPath);
        Origin = onnxPath;
        OriginVocabPath = vocabPath;
        Vocabulary = new VocabularyFile(vocab, Path.GetFileName(vocabPath),
                                        doLowerCase ?? BaseModel.InferLowerCase(vocab));
        _weights = CachedOnnxWeights.Prepare(onnxPath, onnxPath, "onnx", Open, cacheDirectory);
    }

    /// <summary>
    /// The name a model gets when none is given: the file name, or the folder's for the generic names
    /// (<c>model.onnx</c>, <c>model_optimized.onnx</c>) that exporters write.
    /// </summary>
    public string DefaultName => Path.GetFileNameWithoutExtension(Origin) is "model" or "model_optimized"
        ? Path.GetFileName(Path.GetDirectoryName(Origin)) ?? "model"
        : Path.GetFileNameWithoutExtension(Origin);

    /// <inheritdoc/>
    public BaseModelKind Kind => BaseModelKind.Onnx;

    /// <inheritdoc/>
    public string Origin { get; }

    /// <inheritdoc/>
    public string? OriginVocabPath { get; }

    /// <inheritdoc/>
    public string Description => _weights.Description;

    /// <inheritdoc/>
    public string Sha256 => _weights.Sha256;

    /// <inheritdoc/>
    public EncoderConfig Config => _weights.Config;

    /// <inheritdoc/>
    public bool HasPooler => _weights.HasPooler;

    /// <inheritdoc/>
    public VocabularyFile Vocabulary { get; }

    /// <inheritdoc/>
    public string? TokenizerFolder => null;

    /// <inheritdoc/>
    public bool IsSentenceEmbedding => false;

    /// <inheritdoc/>
    public string? CacheDirectory => _weights.CacheDirectory;

    /// <inheritdoc/>
    public IReadOnlyList<string> Notes => _weights.Notes;

    /// <inheritdoc/>
    public BaseModelLoadStats PrepareStats => _weights.PrepareStats;

    /// <inheritdoc/>
    public Dictionary<string, Tensor> ReadWeights(out BaseModelLoadStats stats) => _weights.ReadWeights(out stats);

    // Sequential, unbuffered: the whole file is read once into one array.
    private Stream Open() => new FileStream(Origin, FileMode.Open, FileAccess.Read, FileShare.Read, 1,
                                            System.IO.FileOptions.SequentialScan);
}
