using Microsoft.ML.Peft.Onnx;

namespace Microsoft.ML.Peft.Methods.Adapters;

/// <summary>
/// The ONNX export of <see cref="BottleneckAdapterConfig"/> (sequential) and <see cref="ParallelAdapterConfig"/>
/// (parallel): each chosen residual-output block gets its <see cref="BottleneckAdapter"/> as nodes between its
/// projection and its LayerNorm, where <c>BertResidualOutput</c> calls it. Adapters are non-linear, so nothing merges.
/// </summary>
internal sealed class AdapterOnnxExport(bool attention, bool ffn, bool parallel, AdapterNonLinearity nonLinearity,
    double scaling, bool gated = false) : OnnxMethodExport
{
    /// <inheritdoc/>
    public override string? Adapter(EncoderGraph g, string module, string h, string residual)
    {
        bool inAttention = module.EndsWith(".attention.output", StringComparison.Ordinal);
        if (!(inAttention ? attention : ffn)) return null;
        // Taken by the placement the config chose, not by what was saved: a missing adapter fails the export.
        string prefix = module + "." + BottleneckAdapter.ChildName;
        var weights = BottleneckWeights.Take(g.Weights, prefix, gated);
        return AdapterNodes.Emit(g, prefix, weights, nonLinearity, scaling, parallel ? residual : h, h);
    }
}
