using Microsoft.ML.Peft.Onnx;

namespace Microsoft.ML.Peft.Methods.Lora;

/// <summary>
/// LoRA's ONNX export: every pair is merged into its base weight (W += B·A·scaling), as <see cref="LoraConfig.Merge"/>
/// does, so the graph is the plain encoder's. Trained biases (<see cref="LoraConfig.Bias"/>) are plain weights and
/// the exporter applies them itself.
/// </summary>
internal sealed class LoraOnnxExport(double scaling) : OnnxMethodExport
{
    /// <inheritdoc/>
    public override void Merge(ExportWeights weights) => LoraExportMerge.MergeAll(weights, scaling);
}
