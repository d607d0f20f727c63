using Microsoft.ML.Peft.Methods.Adapters;
using Microsoft.ML.Peft.Onnx;

namespace Microsoft.ML.Peft.Methods.ProPetl;

/// <summary>
/// The ONNX export of <see cref="ProPetlConfig"/>. At inference every layer's masks are fixed, so each layer's
/// effective weights (the shared prototype's times its hard masks) are computed once here, in managed code, from the
/// saved scores. The LoRA prototype then merges into <c>query</c>/<c>value</c>, as the stage merges it; the adapter
/// prototype becomes one adapter's nodes after each layer's <c>output.dense</c>, as
/// <see cref="ProPetlAdapterLayer"/> computes <c>h + up(relu(down(h)))</c>.
/// </summary>
internal sealed class ProPetlOnnxExport(double sparsity, double loraScaling) : OnnxMethodExport
{
    private const string Masks = ".propetl_mask.";
    private readonly Dictionary<string, BottleneckWeights> _adapters = new(StringComparer.Ordinal);

    /// <inheritdoc/>
    public override void Merge(ExportWeights weights)
    {
        // The wrapped modules are found by their saved mask scores (one set per module).
        foreach (var name in weights.TrainedNames.ToList())
        {
            int at = name.IndexOf(Masks, StringComparison.Ordinal);
            if (at < 0) continue;
            string module = name[..at], mask = name[(at + Masks.Length)..];
            if (mask == "down_mask") _adapters[module] = MaskedAdapter(weights, module);
            else if (mask == "lora_A_mask") MergeLora(weights, module);
        }
    }

    /// <inheritdoc/>
    public override string? Linear(EncoderGraph g, string module, string input)
    {
        if (!_adapters.TryGetValue(module, out var adapter)) return null;
        var h = g.PlainLinear(module, input);
        return AdapterNodes.Emit(g, module + ".propetl", adapter, AdapterNonLinearity.Relu, 1.0, h, h);
    }

    // The shared adapter with this layer's masks on its two matrices; the biases are shared unmasked.
    private BottleneckWeights MaskedAdapter(ExportWeights weights, string module)
    {
        string masks = module + Masks;
        const string P = ProPetlConfig.PrototypeName + ".";
        return new BottleneckWeights(
            Masked(weights.Take(P + "adapter_down.weight"), weights.Take(masks + "down_mask")),
            weights.Take(P + "adapter_down.bias"),
            Masked(weights.Take(P + "adapter_up.weight"), weights.Take(masks + "up_mask")),
            weights.Take(P + "adapter_up.bias"));
    }

    // W += (B ⊙ M_B)(A ⊙ M_A) · scaling, as ProPetlLoraLinear.DeltaWeight and DeltaLinear.Merge.
    private void MergeLora(ExportWeights weights, string module)
    {
        string pair = ProPetlConfig.PrototypeName + "." + module[(module.LastIndexOf('.') + 1)..] + ".";
        var a = Masked(weights.Take(pair + "lora_A.weight"), weights.Take(module + Masks + "lora_A_mask"));
        var b = Masked(weights.Take(pair + "lora_B.weight"), weights.Take(module + Masks + "lora_B_mask"));
        var merged = weights.Plain(module + ".weight").Clone();
        merged.AddScaled(FloatTensor.MatMul(b, a), loraScaling);
        weights.SetPlain(module + ".weight", merged);
    }

    /// <summary>
    /// <paramref name="weight"/> times the hard mask of <paramref name="scores"/>, as <see cref="ScoreMask.Hard"/>:
    /// the entries whose |score| is among the top <see cref="ScoreMask.Kept"/> stay, the rest are zeroed.
    /// </summary>
    private FloatTensor Masked(FloatTensor weight, FloatTensor scores)
    {
        weight.RequireSameShape(scores);
        int n = scores.Data.Length;
        long kept = ScoreMask.Kept(n, sparsity);
        var order = Enumerable.Range(0, n).OrderByDescending(i => Math.Abs(scores.Data[i])).Take((int)kept);
        var result = new float[n];
        foreach (int i in order) result[i] = weight.Data[i];
        return new FloatTensor((long[])weight.Shape.Clone(), result);
    }
}
