using Microsoft.ML.Peft.Methods.Lora;
using Microsoft.ML.Peft.Onnx;

namespace Microsoft.ML.Peft.Methods.Dora;

/// <summary>
/// DoRA's ONNX export: each targeted weight becomes <c>m / ‖W + ΔW‖_c · (W + ΔW)</c>, the weight
/// <see cref="DoraLinear.Merge"/> folds in (‖·‖_c the L2 norm of each output row, over the input dimension), so the
/// graph is the plain encoder's. The bias is untouched, as in the layer.
/// </summary>
internal sealed class DoraOnnxExport(double scaling) : OnnxMethodExport
{
    /// <inheritdoc/>
    public override void Merge(ExportWeights weights)
    {
        foreach (var module in LoraExportMerge.Modules(weights))
        {
            var combined = LoraExportMerge.Combined(weights, module,
                LoraExportMerge.TakeDelta(weights, module, scaling));
            var magnitude = weights.Take(module + ".lora_magnitude_vector.weight");
            int rows = combined.Rows, columns = combined.Columns;
            if (magnitude.Data.Length != rows)
                throw new InvalidOperationException(
                    $"DoRA's magnitude for '{module}' has {magnitude.Data.Length} entries, expected {rows}.");
            var data = combined.Data;
            for (int i = 0; i < rows; i++)
            {
                double sumSquares = 0;
                for (int j = 0; j < columns; j++) sumSquares += (double)data[i * columns + j] * data[i * columns + j];
                // m / ‖row‖ in float32 first, as the layer's factor, then applied to the row.
                float factor = magnitude.Data[i] / (float)Math.Sqrt(sumSquares);
                for (int j = 0; j < columns; j++) data[i * columns + j] *= factor;
            }
            weights.SetPlain(module + ".weight", combined);
        }
    }
}
