using Microsoft.ML.Peft.Onnx;

namespace Microsoft.ML.Peft.Methods.Mam;

/// <summary>
/// The ONNX export of <see cref="MamAdapterConfig"/>: its parallel adapter's nodes (from that part's own export) and
/// its prefixes as constant keys and values per layer, cut by prefix tuning's export (the prefixes are saved folded,
/// one tensor <c>prefix_encoder.past_key_values</c> [P, L·2·H]).
/// </summary>
internal sealed class MamOnnxExport(OnnxMethodExport adapter) : OnnxMethodExport
{
    private FloatTensor? _past;

    /// <inheritdoc/>
    public override void Merge(ExportWeights weights)
    {
        adapter.Merge(weights);
        _past = weights.Take(Methods.Prefix.PrefixOnnxExport.PastKeyValues);
    }

    /// <inheritdoc/>
    public override string? Adapter(EncoderGraph g, string module, string h, string residual) =>
        adapter.Adapter(g, module, h, residual);

    /// <inheritdoc/>
    public override (string Keys, string Values)? Prefix(EncoderGraph g, int layer, string hidden,
        string additiveMask) => Methods.Prefix.PrefixOnnxExport.KeysAndValues(g, _past!, layer, hidden);
}
