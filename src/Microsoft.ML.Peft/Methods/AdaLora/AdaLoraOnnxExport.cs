using Microsoft.ML.Peft.Onnx;

namespace Microsoft.ML.Peft.Methods.AdaLora;

/// <summary>
/// AdaLoRA's ONNX export: each targeted weight gets <c>W += P · (Λ ⊙ Q) · alpha / (r_init + 1e-5)</c>, what
/// <see cref="SvdLinear.DeltaWeight"/> folds in. Pruned singular values are already zero in the saved Λ (the final
/// rank pattern is applied before saving), so no mask is needed here.
/// </summary>
internal sealed class AdaLoraOnnxExport(double alpha, int initialRank) : OnnxMethodExport
{
    private const string QSuffix = ".lora_A";

    /// <inheritdoc/>
    public override void Merge(ExportWeights weights)
    {
        // peft's scaling = lora_alpha / (ranknum + 1e-5), as SvdLinear's.
        double scale = alpha / (initialRank + 1e-5);
        var modules = weights.TrainedNames.Where(n => n.EndsWith(QSuffix, StringComparison.Ordinal))
            .Select(n => n[..^QSuffix.Length]).ToList();
        foreach (var module in modules)
        {
            var q = weights.Take(module + QSuffix).Clone();
            var lambda = weights.Take(module + ".lora_E");
            var p = weights.Take(module + ".lora_B");
            if (lambda.Data.Length != q.Rows)
                throw new InvalidOperationException(
                    $"AdaLoRA's Λ for '{module}' has {lambda.Data.Length} entries, expected {q.Rows}.");
            // Λ ⊙ Q: row i of Q times Λ_i, in float32 as the layer's lora_A * lora_E.
            for (int i = 0; i < q.Rows; i++)
                for (int j = 0; j < q.Columns; j++) q.Data[i * q.Columns + j] *= lambda.Data[i];
            var delta = FloatTensor.MatMul(p, q);
            for (int i = 0; i < delta.Data.Length; i++) delta.Data[i] = (float)(delta.Data[i] * scale);
            var merged = weights.Plain(module + ".weight").Clone();
            merged.AddScaled(delta);
            weights.SetPlain(module + ".weight", merged);
        }
    }
}
