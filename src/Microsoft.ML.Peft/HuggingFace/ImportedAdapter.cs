using Microsoft.ML.Peft.Methods;
using Microsoft.ML.Peft.Onnx;
using Microsoft.ML.Peft.Training;

namespace Microsoft.ML.Peft.HuggingFace;

/// <summary>
/// A <c>peft</c> adapter (or merged <c>transformers</c> model) translated into what a stage holds: the method's
/// options, the trained tensors under this library's names (head in label units), the head's task and labels, and
/// whether the method merges into the encoder for scoring.
/// </summary>
internal sealed record ImportedAdapter(PeftMethodConfig Method, Dictionary<string, FloatTensor> Trained,
    PeftTask Task, string[] Labels, long TrainableParameters, long TotalParameters, bool Merged)
{
    /// <summary>How the base's transformers head pools: the pooler (BERT) or the first token (RoBERTa, DistilBERT).
    /// </summary>
    public Modeling.Pooling Pooling { get; init; } = Modeling.Pooling.Pooler;

    /// <summary>The head's hidden layer (RoBERTa's dense + tanh, DistilBERT's pre_classifier + ReLU).</summary>
    public Modeling.HeadLayer HeadLayer { get; init; }
}
