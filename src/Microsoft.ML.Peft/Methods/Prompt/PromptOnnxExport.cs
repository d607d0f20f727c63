using Microsoft.ML.Peft.Onnx;

namespace Microsoft.ML.Peft.Methods.Prompt;

/// <summary>
/// Prompt tuning in an exported graph: the saved <c>prompt_embeddings.weight</c> [P, hidden] becomes one constant
/// [1, P, hidden] repeated to the batch, as <see cref="PromptEmbedding"/> expands it; the encoder exporter prepends it
/// and extends the mask, and pooling drops those positions.
/// </summary>
/// <param name="peftLayout">The prompt joins the word embeddings and is pooled
/// (<see cref="PromptTuningConfig.PeftLayout"/>).</param>
internal sealed class PromptOnnxExport(bool peftLayout) : OnnxMethodExport
{
    /// <summary>The saved table's name (the embedding registered as <c>prompt_embeddings</c>).</summary>
    public const string Table = "prompt_embeddings.weight";

    private FloatTensor? _table;

    /// <inheritdoc/>
    public override void Merge(ExportWeights weights)
    {
        _table = weights.Take(Table);
        if (_table.Shape.Length != 2)
            throw new InvalidOperationException($"'{Table}' has shape {_table.ShapeText}, not [P, hidden].");
    }

    /// <summary>P, known once <see cref="Merge"/> has taken the table (the exporter merges before it emits).</summary>
    public override int PromptLength => _table?.Rows
        ?? throw new InvalidOperationException("The prompt's length is known only after Merge.");

    /// <inheritdoc/>
    public override bool PromptThroughEmbeddings => peftLayout;

    /// <inheritdoc/>
    public override string Prompt(EncoderGraph g, string hidden)
    {
        var table = _table!;
        var prompt = g.Cached(Table, () => new FloatTensor([1, table.Rows, table.Columns], table.Data));
        return g.TileToBatch(prompt, hidden, 3);
    }
}
