namespace Microsoft.ML.Peft.Methods.BitFit;

/// <summary>Which encoder biases BitFit trains.</summary>
public enum BitFitBiases
{
    /// <summary>
    /// Every bias of the encoder: the query/key/value, attention-output, intermediate and output projections, both
    /// LayerNorms of each layer, the embedding LayerNorm and the pooler when the checkpoint has one (the BitFit paper's
    /// method).
    /// </summary>
    All,

    /// <summary>
    /// Only the query, key and value biases and the feed-forward intermediate (expansion) bias of each layer.
    /// </summary>
    QueryKeyValueIntermediate,

    /// <summary>
    /// Only the query bias and the feed-forward intermediate bias of each layer: the paper's smallest subset
    /// (b<sup>q</sup>, b<sup>m2</sup>, §4.2), the biases that changed most under full BitFit, which it found to lose
    /// little accuracy.
    /// </summary>
    QueryIntermediate,
}
