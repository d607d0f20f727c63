using Microsoft.ML.Peft.Methods.Lora;
using Microsoft.ML.Peft.Onnx;

namespace Microsoft.ML.Peft.Methods.QLora;

/// <summary>
/// QLoRA's ONNX export: the stage scores with every encoder linear weight quantized and dequantized
/// (<see cref="QuantizedLinear"/>), so the export replaces each one with the same round trip done in managed code,
/// then merges the LoRA pairs (W += B·A·scaling) into the dequantized weights. The graph is the plain encoder's in
/// float32: the ONNX file does not keep the 4-bit storage, only the stage's scores.
/// </summary>
internal sealed class QLoraOnnxExport(double scaling, int bits, int blockSize) : OnnxMethodExport
{
    private const string EncoderPrefix = "bert.encoder.";

    /// <inheritdoc/>
    public override void Merge(ExportWeights weights)
    {
        foreach (var name in EncoderLinearWeights(weights))
            weights.SetPlain(name, ManagedQuantization.RoundTrip(weights.Plain(name), bits, blockSize));
        LoraExportMerge.MergeAll(weights, scaling);
    }

    // QLoraConfig.Attach quantizes every Linear under bert.encoder: these six per layer (BertAttention, BertLayer).
    // LayerNorms and biases stay float32.
    private static IEnumerable<string> EncoderLinearWeights(ExportWeights weights)
    {
        for (int layer = 0; ; layer++)
        {
            string p = $"{EncoderPrefix}layer.{layer}.";
            if (!weights.HasPlain(p + "attention.self.query.weight")) yield break;
            foreach (var module in Modules) yield return p + module + ".weight";
        }
    }

    private static readonly string[] Modules =
    [
        "attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
        "intermediate.dense", "output.dense",
    ];
}
