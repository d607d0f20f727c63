using Microsoft.ML.Peft.Onnx;

namespace Microsoft.ML.Peft.Methods.Mam;

/// <summary>
/// The ONNX export of <see cref="MamAdapterConfig"/>: its parallel adapter's nodes (from that part's own export) and
/// its prefixes as constant keys and values per layer. The prefixes are saved in their inference form, one tensor
/// <c>prefix_encoder.past_key_values</c> [P, L·2·H] (any reparameterisation is folded before saving), so they need
/// no nodes of their own, only slicing here.
/// </summary>
internal sealed class MamOnnxExport(OnnxMethodExport adapter) : OnnxMethodExport
{
    private const string PrefixName = "prefix_encoder.past_key_values";

    /// <inheritdoc/>
    public override string? Adapter(EncoderGraph g, string module, string h, string residual) =>
        adapter.Adapter(g, module, h, residual);

    /// <inheritdoc/>
    public override (string Keys, string Values)? Prefix(EncoderGraph g, int layer, string hidden,
        string additiveMask)
    {
        var prefixes = g.Weights.Take(PrefixName);
        var keys = g.Cached($"{PrefixName}.{layer}.keys", () => LayerPart(g.Config, prefixes, layer, 0));
        var values = g.Cached($"{PrefixName}.{layer}.values", () => LayerPart(g.Config, prefixes, layer, 1));
        // The same prefixes for every row, as PrefixLayer expands them over the batch.
        return (g.TileToBatch(keys, hidden, 4), g.TileToBatch(values, hidden, 4));
    }

    /// <summary>
    /// Layer <paramref name="layer"/>'s keys (<paramref name="part"/> 0) or values (1) as [1, heads, P, head size]:
    /// PrefixEncoder.Layer's reshape to [P, 2, heads, head size] and permute, on the managed tensor. The columns are
    /// laid out layer, key/value, head, head dimension (peft's <c>past_key_values</c>).
    /// </summary>
    private static FloatTensor LayerPart(Modeling.EncoderConfig config, FloatTensor prefixes, int layer, int part)
    {
        int heads = config.NumAttentionHeads, size = config.HeadSize, hidden = heads * size;
        int tokens = prefixes.Rows, width = prefixes.Columns;
        if (width != config.NumHiddenLayers * 2 * hidden)
            throw new InvalidOperationException(
                $"'{PrefixName}' has shape {prefixes.ShapeText}; {config.NumHiddenLayers} layers of " +
                $"keys and values {hidden} wide need {config.NumHiddenLayers * 2 * hidden} columns.");
        var data = new float[heads * tokens * size];
        for (int h = 0; h < heads; h++)
            for (int t = 0; t < tokens; t++)
                Array.Copy(prefixes.Data, t * width + (layer * 2 + part) * hidden + h * size,
                    data, (h * tokens + t) * size, size);
        return new FloatTensor([1, heads, tokens, size], data);
    }
}
