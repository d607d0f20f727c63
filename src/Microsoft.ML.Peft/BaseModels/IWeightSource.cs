using Microsoft.ML.Peft.Modeling;
using Microsoft.ML.Peft.Onnx;

namespace Microsoft.ML.Peft.BaseModels;

/// <summary>
/// Where a <see cref="BaseModel"/>'s configuration, vocabulary and weights come from. Each kind of source is one
/// immutable type (<see cref="EmbeddedOnnxSource"/>, <see cref="OnnxFileSource"/>, <see cref="HfFolderSource"/>,
/// <see cref="StoredWeightSource"/>), fully prepared when created, so <see cref="BaseModel"/> never branches on the
/// kind and nothing about it changes afterwards.
/// </summary>
internal interface IWeightSource
{
    /// <summary>The kind recorded in saved models, which decides how a load finds the base again.</summary>
    BaseModelKind Kind { get; }

    /// <summary>What a saved model records to find the source again: a package model name or a full path.</summary>
    string Origin { get; }

    /// <summary>The vocabulary path given, for sources whose vocabulary is a separate file.</summary>
    string? OriginVocabPath { get; }

    /// <summary>Where the weights come from, for messages (<see cref="BaseModel.Source"/>).</summary>
    string Description { get; }

    /// <summary>
    /// Lowercase hex SHA-256 of the source weights: the fingerprint saved models are checked against.
    /// </summary>
    string Sha256 { get; }

    /// <summary>The encoder's configuration.</summary>
    EncoderConfig Config { get; }

    /// <summary>Whether the weights include <c>pooler.dense.*</c>.</summary>
    bool HasPooler { get; }

    /// <summary>The tokenizer vocabulary.</summary>
    VocabularyFile Vocabulary { get; }

    /// <summary>
    /// A folder holding Hugging Face tokenizer files, or null for WordPiece from <see cref="Vocabulary"/>.
    /// </summary>
    string? TokenizerFolder { get; }

    /// <summary>Whether the base was trained to embed sentences one at a time (sentence-transformers).</summary>
    bool IsSentenceEmbedding { get; }

    /// <summary>The weight cache entry folder, when the source's weights are cached on disk.</summary>
    string? CacheDirectory { get; }

    /// <summary>Remarks collected while preparing the source.</summary>
    IReadOnlyList<string> Notes { get; }

    /// <summary>How the source was prepared (<see cref="BaseModel.LoadStats"/>).</summary>
    BaseModelLoadStats PrepareStats { get; }

    /// <summary>
    /// New managed float32 tensors keyed by Hugging Face <c>BertModel</c> names, pooler included when there is one;
    /// the caller may change them. Managed, so that a process scoring with ONNX Runtime reads a base without libtorch;
    /// <see cref="BaseModel.LoadWeights"/> turns them into libtorch tensors. <paramref name="stats"/> says how they
    /// were read (the caller fills in the total).
    /// </summary>
    Dictionary<string, FloatTensor> ReadWeights(out BaseModelLoadStats stats);
}

/// <summary>A tokenizer vocabulary: the file's bytes, its name and whether the tokenizer lower-cases.</summary>
internal sealed record VocabularyFile(byte[] Bytes, string FileName, bool DoLowerCase);
