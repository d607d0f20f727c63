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
    PeftTask Task, string[] Labels, long TrainableParameters, long TotalParameters, bool Merged);
