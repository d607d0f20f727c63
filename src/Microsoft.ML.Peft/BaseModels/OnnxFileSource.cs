using Microsoft.ML.Peft.Modeling;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.BaseModels;

/// <summary>
/// An ONNX export of a BERT-family encoder on disk with its WordPiece vocabulary file. Saved models record both paths
/// (or store the weights).
/// </summary>
internal sealed class OnnxFileSource : OnnxWeightSource
{
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
        Weights = CachedOnnxWeights.Prepare(onnxPath, onnxPath, "onnx", Open, cacheDirectory);
    }

    /// <summary>
    /// The name a model gets when none is given: the file name, or the folder's for the generic names
    /// (<c>model.onnx</c>, <c>model_optimized.onnx</c>) that exporters write.
    /// </summary>
    public string DefaultName => Path.GetFileNameWithoutExtension(Origin) is "model" or "model_optimized"
        ? Path.GetFileName(Path.GetDirectoryName(Origin)) ?? "model"
        : Path.GetFileNameWithoutExtension(Origin);

    /// <inheritdoc/>
    public override BaseModelKind Kind => BaseModelKind.Onnx;

    /// <inheritdoc/>
    public override string Origin { get; }

    /// <inheritdoc/>
    public override string? OriginVocabPath { get; }

    /// <inheritdoc/>
    public override VocabularyFile Vocabulary { get; }

    /// <inheritdoc/>
    public override bool IsSentenceEmbedding => false;

    // Sequential, unbuffered: the whole file is read once into one array.
    private Stream Open() => new FileStream(Origin, FileMode.Open, FileAccess.Read, FileShare.Read, 1,
                                            System.IO.FileOptions.SequentialScan);
}
