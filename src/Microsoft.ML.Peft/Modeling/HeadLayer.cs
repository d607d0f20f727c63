namespace Microsoft.ML.Peft.Modeling;

/// <summary>
/// A hidden layer between the pooled vector and the classifier, for heads that transformers builds that way and
/// adapters imported from them: RoBERTa's <c>RobertaClassificationHead</c> (dropout, dense, tanh, dropout, out_proj)
/// and DistilBERT's <c>pre_classifier</c> + ReLU + dropout. The layer is part of the head: it always trains.
/// </summary>
public enum HeadLayer
{
    /// <summary>No hidden layer: dropout then the classifier (BERT's head).</summary>
    None,
    /// <summary>RoBERTa: dropout, dense (hidden → hidden), tanh, then dropout and the classifier.</summary>
    DenseTanh,
    /// <summary>DistilBERT: dense (hidden → hidden), ReLU, then dropout and the classifier.</summary>
    DenseRelu,
}
