using Microsoft.ML.Peft.Onnx;

namespace Microsoft.ML.Peft.Methods.Lora;

/// <summary>
/// Managed (libtorch-free) merging shared by the LoRA family's ONNX exports (LoRA, DoRA, QLoRA): finds the modules
/// that carry a trained pair and forms their dense update B·A·scaling as <see cref="LoraBranch.DeltaWeight()"/> does,
/// so the exported graph needs no extra nodes.
/// </summary>
internal static class LoraExportMerge
{
    private const string ASuffix = ".lora_A.weight";

    /// <summary>
    /// Paths of the modules with a trained <c>lora_A.weight</c> (e.g.
    /// <c>bert.encoder.layer.0.attention.self.query</c>), read from the saved names so the export needs neither the
    /// model nor the target resolution.
    /// </summary>
    public static IReadOnlyList<string> Modules(ExportWeights weights) => weights.TrainedNames
        .Where(n => n.EndsWith(ASuffix, StringComparison.Ordinal))
        .Select(n => n[..^ASuffix.Length])
        .ToList();

    /// <summary>Takes <paramref name="module"/>'s pair and returns ΔW = B·A·scaling [out, in].</summary>
    public static FloatTensor TakeDelta(ExportWeights weights, string module, double scaling)
    {
        var a = weights.Take(module + ASuffix);
        var b = weights.Take(module + ".lora_B.weight");
        var delta = FloatTensor.MatMul(b, a);
        // Scaled after the product, as LoraBranch: the float32 rounding then matches the stage's.
        var data = delta.Data;
        for (int i = 0; i < data.Length; i++) data[i] = (float)(data[i] * scaling);
        return delta;
    }

    /// <summary>W + ΔW for <paramref name="module"/>'s plain weight, as a new tensor (the plain weight is kept).
    /// </summary>
    public static FloatTensor Combined(ExportWeights weights, string module, FloatTensor delta)
    {
        var combined = weights.Plain(module + ".weight").Clone();
        combined.AddScaled(delta);
        return combined;
    }

    /// <summary>Folds every trained pair into its plain weight: W += B·A·scaling (LoRA's and QLoRA's merge).
    /// </summary>
    public static void MergeAll(ExportWeights weights, double scaling)
    {
        foreach (var module in Modules(weights))
            weights.SetPlain(module + ".weight", Combined(weights, module, TakeDelta(weights, module, scaling)));
    }
}
