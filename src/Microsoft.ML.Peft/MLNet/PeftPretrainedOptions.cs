using Microsoft.ML.Peft.Training;

namespace Microsoft.ML.Peft.MLNet;

/// <summary>
/// Options of <see cref="PeftCatalog.FromPretrained"/>: the columns the imported stage reads and writes, its labels
/// and how it scores. Defaults match <see cref="PeftTextClassificationOptions"/>'s.
/// </summary>
public sealed class PeftPretrainedOptions
{
    /// <summary>The first (or only) text column. Default <c>Sentence1</c>.</summary>
    public string Sentence1ColumnName { get; set; } = "Sentence1";

    /// <summary>The second text column of sentence pairs (cross-encoded, as transformers does). Default null.</summary>
    public string? Sentence2ColumnName { get; set; }

    /// <summary>Name of the score column. Default <c>Score</c>.</summary>
    public string ScoreColumnName { get; set; } = "Score";

    /// <summary>Name of the predicted key column (classification). Default <c>PredictedLabel</c>.</summary>
    public string PredictedLabelColumnName { get; set; } = "PredictedLabel";

    /// <summary>
    /// The label values in class-id order; null (default) reads them from the folder's <c>config.json</c>
    /// (<c>id2label</c>), or names them <c>LABEL_0</c>, <c>LABEL_1</c>, ... as transformers does when it has none.
    /// </summary>
    public string[]? Labels { get; set; }

    /// <summary>
    /// Accept a base model whose name differs from the adapter's <c>base_model_name_or_path</c> (tensor shapes are
    /// still checked). Default false.
    /// </summary>
    public bool AllowDifferentBaseModelName { get; set; }

    /// <summary>Longest input in tokens (capped by the base's positions). Default 128.</summary>
    public int MaxSequenceLength { get; set; } = 128;

    /// <summary>Rows scored per batch; null (default) for the stage default.</summary>
    public int? BatchSize { get; set; }

    /// <summary>Scoring precision. Default <see cref="PeftPrecision.Auto"/>.</summary>
    public PeftPrecision Precision { get; set; } = PeftPrecision.Auto;

    /// <summary>The runtime the stage scores with. Default <see cref="ScoringEngine.Auto"/>.</summary>
    public ScoringEngine ScoringEngine { get; set; } = ScoringEngine.Auto;
}
