using Microsoft.ML.Peft.Onnx;

namespace Microsoft.ML.Peft.Methods.Adapters;

/// <summary>
/// One bottleneck adapter's weights as managed tensors (down [b, H] and its bias, up [H, b] and its bias, and
/// UniPELT's gate [1, H] with its bias when present). Kept apart from the ONNX nodes so that methods whose adapter
/// weights are derived rather than saved (ProPETL's masked prototype) emit the same nodes.
/// </summary>
internal sealed record BottleneckWeights(FloatTensor Down, FloatTensor DownBias, FloatTensor Up, FloatTensor UpBias,
    FloatTensor? Gate = null, FloatTensor? GateBias = null)
{
    /// <summary>
    /// Takes the trained tensors of the <see cref="BottleneckAdapter"/> registered at <paramref name="prefix"/>
    /// (e.g. <c>bert.encoder.layer.0.output.adapter</c>); the gate only when <paramref name="gated"/>.
    /// </summary>
    public static BottleneckWeights Take(ExportWeights weights, string prefix, bool gated)
    {
        FloatTensor T(string name) => weights.Take(prefix + "." + name);
        return new BottleneckWeights(T("adapter_down.weight"), T("adapter_down.bias"), T("adapter_up.weight"),
            T("adapter_up.bias"), gated ? T("adapter_gate.weight") : null, gated ? T("adapter_gate.bias") : null);
    }
}

/// <summary>
/// Emits a bottleneck adapter as ONNX nodes, as <see cref="BottleneckAdapter"/> computes it at inference
/// (dropout off): <c>h + s · up(act(down(u)))</c>, times <c>sigmoid(gate(u))</c> when gated, with u = h for a
/// sequential adapter and the sub-layer's input for a parallel one. Shared by every adapter-based method's export.
/// </summary>
internal static class AdapterNodes
{
    /// <summary>
    /// The nodes for one adapter named <paramref name="name"/> (unique per adapter: its initializers are cached under
    /// it) reading <paramref name="input"/> and adding its update to <paramref name="h"/>.
    /// </summary>
    public static string Emit(EncoderGraph g, string name, BottleneckWeights w, AdapterNonLinearity nonLinearity,
        double scaling, string input, string h)
    {
        var down = g.Linear(name + ".adapter_down", w.Down, w.DownBias, input);
        var update = g.Linear(name + ".adapter_up", w.Up, w.UpBias, Activation(g, nonLinearity, down));
        // The same float32 product the module computes: it skips the multiply at 1, so the graph does too.
        if (scaling != 1.0) update = g.B.Node("Mul", [update, g.B.Scalar((float)scaling)]);
        if (w.Gate is not null)
        {
            var gate = g.B.Node("Sigmoid", [g.Linear(name + ".adapter_gate", w.Gate, w.GateBias, input)]);
            update = g.B.Node("Mul", [update, gate]);
        }
        return g.B.Node("Add", [h, update]);
    }

    /// <summary>The adapter's activation, as the module's choice of libtorch function computes it.</summary>
    public static string Activation(EncoderGraph g, AdapterNonLinearity nonLinearity, string x) => nonLinearity switch
    {
        AdapterNonLinearity.Relu => g.Activation("relu", x),
        AdapterNonLinearity.Gelu => g.Activation("gelu", x), // libtorch's default gelu is the exact (erf) form
        AdapterNonLinearity.Swish => g.Activation("silu", x),
        AdapterNonLinearity.Tanh => g.B.Node("Tanh", [x]),
        _ => throw new NotSupportedException($"Adapter activation {nonLinearity} cannot be exported to ONNX."),
    };
}
