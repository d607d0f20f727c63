using Microsoft.ML.Peft.Modeling;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Methods.Prefix;

/// <summary>
/// One layer's view of the shared <see cref="PrefixEncoder"/>, set as that layer's <c>BertSelfAttention.Prefix</c>.
/// With a gate (UniPELT) both prefixes are multiplied by
/// <c>g = mean over the row's real tokens of sigmoid(prefix_gate(x))</c>, x the layer input: one value per row since
/// every token shares the prefixes.
/// </summary>
internal sealed class PrefixLayer(PrefixEncoder encoder, int layer, Linear? gate) : IKeyValuePrefix
{
    public (Tensor Keys, Tensor Values) KeysAndValues(long batch, ScalarType dtype, Device device)
    {
        var (k, v) = encoder.Layer(layer);
        return (Expand(k, batch, dtype, device), Expand(v, batch, dtype, device));
    }

    public (Tensor Keys, Tensor Values) KeysAndValues(Tensor hidden, Tensor additiveMask)
    {
        var (k, v) = KeysAndValues(hidden.shape[0], hidden.dtype, hidden.device);
        if (gate is null) return (k, v);
        // UniPELT averages over every position; averaging over real tokens only keeps a row's score independent of
        // how much padding its batch has.
        var real = additiveMask.view(hidden.shape[0], -1).eq(0).to(hidden.dtype);            // [batch, seq]
        var g = gate.forward(hidden).squeeze(-1).sigmoid();                                    // [batch, seq]
        var mean = (g * real).sum(1) / real.sum(1).clamp_min(1);                               // [batch]
        var scale = mean.view(-1, 1, 1, 1);
        return (k * scale, v * scale);
    }

    private static Tensor Expand(Tensor t, long batch, ScalarType dtype, Device device) =>
        t.to(dtype, device).unsqueeze(0).expand(batch, -1, -1, -1);
}
