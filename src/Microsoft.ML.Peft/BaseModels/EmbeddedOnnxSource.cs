using Microsoft.ML.Peft.Modeling;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.BaseModels;

/// <summary>
/// An ONNX model and WordPiece vocabulary embedded as resources in a SentenceTransformers.* package assembly
/// (read as data; none of its code runs). Saved models record only the package's model name.
/// </summary>
internal sealed class EmbeddedOnnxSource : OnnxWeightSource
{
    /// <summary>Finds the package assembly of <paramref name="package"/> (<c>MiniLM</c>, <c>ArcticXs</c>).</summary>
    /// <param name="package">
    /// The model name inside the package name <c>SentenceTransformers.&lt;package&gt;</c>.
    /// </param>
    /// <param name="cacheDirectory">Weight cache folder; null for the default.</param>
    public EmbeddedOnnxSource(string package, string? cacheDirectory)
    {
        string assembly = "SentenceTransformers." + package;
        string dll = EmbeddedResources.FindAssembly(assembly, BaseModel.EmbeddedPackageVersion);
        var onnx = EmbeddedResources.Find(dll, $"{assembly}.Resources.model.onnx");
        var vocab = EmbeddedResources.Find(dll, $"{assembly}.Resources.vocab.txt");
        Origin = package;
        // The embedded vocabularies are uncased (both models are uncased BERT).
        Vocabulary = new VocabularyFile(vocab.ReadAllBytes(), "vocab.txt", DoLowerCase: true);
        // The resource name is the part of the assembly file whose hash the cache remembers.
        Weights = CachedOnnxWeights.Prepare($"{Path.GetFileName(dll)}!{onnx.ResourceName}", dll, onnx.ResourceName,
                                             onnx.Open, cacheDirectory);
    }

    /// <inheritdoc/>
    public override BaseModelKind Kind => BaseModelKind.Embedded;

    /// <inheritdoc/>
    public override string Origin { get; }

    /// <inheritdoc/>
    public override string? OriginVocabPath => null;

    /// <inheritdoc/>
    public override VocabularyFile Vocabulary { get; }

    /// <inheritdoc/>
    public override bool IsSentenceEmbedding => true;
}
