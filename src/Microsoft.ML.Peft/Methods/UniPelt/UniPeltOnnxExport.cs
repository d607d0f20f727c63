using Microsoft.ML.Peft.Methods.Adapters;
using Microsoft.ML.Peft.Methods.Prefix;
using Microsoft.ML.Peft.Onnx;

namespace Microsoft.ML.Peft.Methods.UniPelt;

/// <summary>
/// UniPELT in an exported graph. Every gate reads the input, so nothing merges: each part becomes nodes, op for op as
/// the TorchSharp modules compute it in eval mode (dropout off): <see cref="GatedLoraLinear"/> on its targets,
/// <see cref="PrefixLayer"/> with its gate averaged over the row's real tokens (the only gate that reads the mask),
/// and the gated <see cref="BottleneckAdapter"/> after the feed-forward block. Which layers carry which part is read
/// from the trained tensors' names, so the export resolves no targets.
/// </summary>
internal sealed class UniPeltOnnxExport(double loraScaling, AdapterNonLinearity nonLinearity) : OnnxMethodExport
{
    private FloatTensor? _past;

    /// <inheritdoc/>
    public override void Merge(ExportWeights weights) => _past = weights.Take(PrefixOnnxExport.PastKeyValues);

    /// <summary>
    /// <c>W x + (lora_B(lora_A(x)) · sigmoid(lora_gate(x))) · scaling</c>, products in
    /// <see cref="GatedLoraLinear.forward"/>'s order; null for layers without LoRA.
    /// </summary>
    public override string? Linear(EncoderGraph g, string module, string input)
    {
        if (!g.Weights.HasTrained(module + ".lora_A.weight")) return null;
        var down = Dense(g, module + ".lora_A", input, bias: false);
        var product = Dense(g, module + ".lora_B", down, bias: false);
        var gate = g.B.Node("Sigmoid", [Dense(g, module + ".lora_gate", input)]);
        var update = g.B.Node("Mul", [g.B.Node("Mul", [product, gate]), g.B.Scalar((float)loraScaling)]);
        return g.B.Node("Add", [g.PlainLinear(module, input), update]);
    }

    /// <summary>
    /// The sequential adapter's <c>h + up(act(down(h))) · sigmoid(adapter_gate(h))</c> (scaling 1, as UniPELT builds
    /// it); null for blocks without one.
    /// </summary>
    public override string? Adapter(EncoderGraph g, string module, string h, string residual)
    {
        string name = module + "." + BottleneckAdapter.ChildName;
        if (!g.Weights.HasTrained(name + ".adapter_down.weight")) return null;
        var weights = BottleneckWeights.Take(g.Weights, name, gated: true);
        return AdapterNodes.Emit(g, name, weights, nonLinearity, scaling: 1.0, input: h, h: h);
    }

    /// <summary>
    /// The layer's prefixes times <c>Σ sigmoid(prefix_gate(x))·real / max(Σ real, 1)</c> per row, where real marks the
    /// positions whose additive mask is 0 (<see cref="PrefixLayer"/>'s masked mean).
    /// </summary>
    public override (string Keys, string Values)? Prefix(EncoderGraph g, int layer, string hidden,
        string additiveMask)
    {
        var (keys, values) = PrefixOnnxExport.KeysAndValues(g, _past!, layer, hidden);
        var b = g.B;
        var gate = Dense(g, $"bert.encoder.layer.{layer}.attention.self.prefix_gate", hidden);
        gate = b.Node("Sigmoid", [b.Node("Squeeze", [gate, b.Int64s(-1)])]);                  // [batch, seq]
        var flat = b.Node("Reshape", [additiveMask, b.Int64s(0, -1)]);                          // [batch, seq]
        var real = b.Node("Cast", [b.Node("Equal", [flat, b.Scalar(0f)])], [("to", 1L)]);
        var sum = b.Node("ReduceSum", [b.Node("Mul", [gate, real]), b.Int64s(1)], [("keepdims", 0L)]);
        var count = b.Node("ReduceSum", [real, b.Int64s(1)], [("keepdims", 0L)]);
        var mean = b.Node("Div", [sum, b.Node("Max", [count, b.Scalar(1f)])]);                  // [batch]
        var scale = b.Node("Reshape", [mean, b.Int64s(-1, 1, 1, 1)]);
        return (b.Node("Mul", [keys, scale]), b.Node("Mul", [values, scale]));
    }

    // The trained linear layer <name> (weight, and bias unless told otherwise) on x.
    private static string Dense(EncoderGraph g, string name, string x, bool bias = true) =>
        g.Linear(name, g.Weights.Take(name + ".weight"), bias ? g.Weights.Take(name + ".bias") : null, x);

}
