using Microsoft.ML.Peft.Onnx;

namespace Microsoft.ML.Peft.Methods.Prefix;

/// <summary>
/// Prefix tuning in an exported graph: each layer's keys and values, cut from the saved (folded)
/// <c>prefix_encoder.past_key_values</c> as <see cref="PrefixEncoder.Layer"/> cuts them, become constants repeated to
/// the batch, as <see cref="PrefixLayer"/> expands them. Input-independent, so a layer costs two constants and a Tile.
/// </summary>
/// <param name="peftLayout">The text's positions start after the prefix (<see cref="PrefixTuningConfig.PeftLayout"/>).
/// </param>
internal sealed class PrefixOnnxExport(bool peftLayout) : OnnxMethodExport
{
    /// <summary>The saved tensor's name: the folded parameter (the MLP never reaches a saved model).</summary>
    public const string PastKeyValues = PrefixEncoder.ChildName + ".past_key_values";

    private FloatTensor? _past;

    /// <inheritdoc/>
    public override void Merge(ExportWeights weights) => _past = weights.Take(PastKeyValues);

    /// <inheritdoc/>
    public override int PositionOffset => peftLayout
        ? _past?.Rows ?? throw new InvalidOperationException("The prefix's length is known only after Merge.")
        : 0;

    /// <inheritdoc/>
    public override (string Keys, string Values)? Prefix(EncoderGraph g, int layer, string hidden,
        string additiveMask) => KeysAndValues(g, _past!, layer, hidden);

    /// <summary>
    /// Layer <paramref name="layer"/>'s keys and values [batch, heads, P, head size] from <paramref name="past"/>
    /// [P, layers·2·hidden], repeated to the batch of <paramref name="like"/>. Shared with UniPELT's gated prefix.
    /// </summary>
    public static (string Keys, string Values) KeysAndValues(EncoderGraph g, FloatTensor past, int layer,
        string like)
    {
        var c = g.Config;
        if (past.Shape.Length != 2 || past.Columns != 2L * c.NumHiddenLayers * c.HiddenSize)
            throw new InvalidOperationException(
                $"'{PastKeyValues}' has shape {past.ShapeText}, not [P, {2L * c.NumHiddenLayers * c.HiddenSize}].");
        string name = $"{PrefixEncoder.ChildName}.layer.{layer}.";
        var keys = g.Cached(name + "keys", () => Split(past, layer, 0, c.NumAttentionHeads, c.HeadSize));
        var values = g.Cached(name + "values", () => Split(past, layer, 1, c.NumAttentionHeads, c.HeadSize));
        return (g.TileToBatch(keys, like, 4), g.TileToBatch(values, like, 4));
    }

    // [1, heads, P, size]: the layer's keys (part 0) or values (part 1), each row's last axis laid out layer,
    // key/value, head, head dimension (reshape(P, 2, heads, size).permute(1, 2, 0, 3) in PrefixEncoder.Layer).
    private static FloatTensor Split(FloatTensor past, int layer, int part, int heads, int size)
    {
        int tokens = past.Rows, width = heads * size;
        var data = new float[(long)heads * tokens * size];
        for (int h = 0; h < heads; h++)
            for (int p = 0; p < tokens; p++)
                Array.Copy(past.Data, (long)p * past.Columns + (2L * layer + part) * width + (long)h * size,
                    data, ((long)h * tokens + p) * size, size);
        return new FloatTensor([1, heads, tokens, size], data);
    }
}
