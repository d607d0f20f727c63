using Microsoft.ML.Peft.Modeling;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Methods.Prefix;

/// <summary>
/// The trainable key/value prefixes of every layer (<c>peft</c>'s <c>PrefixEncoder</c>), registered on the model as
/// <c>prefix_encoder</c>. Two forms: reparameterised (Li &amp; Liang, 2021) — <c>embedding</c> [P, H] →
/// <c>transform</c> = Linear(H, m) → tanh → Linear(m, L·2·H) — used while training; and plain — one tensor
/// <c>past_key_values</c> [P, L·2·H] — which <see cref="Fold"/> computes once from the first (peft's inference
/// mode).
/// The last dimension is laid out layer, then key/value, then head, then head dimension, as peft's
/// <c>past_key_values</c>.
/// </summary>
internal sealed class PrefixEncoder : nn.Module
{
    /// <summary>The name under which the model registers the encoder.</summary>
    public const string ChildName = "prefix_encoder";

    internal Embedding? embedding;
    internal Sequential? transform;
    internal Parameter? past_key_values;
    private readonly int _tokens, _layers, _heads, _headSize;

    /// <summary>
    /// Creates P = <paramref name="tokens"/> prefixes for every layer of an encoder shaped by
    /// <paramref name="config"/>.
    /// </summary>
    public PrefixEncoder(EncoderConfig config, int tokens, bool reparameterize, int projectionHiddenSize,
        Device device) : base(ChildName)
    {
        _tokens = tokens;
        _layers = config.NumHiddenLayers;
        _heads = config.NumAttentionHeads;
        _headSize = config.HeadSize;
        long width = (long)_layers * 2 * config.HiddenSize;
        // Initialised as peft: embeddings N(0, 1) (nn.Embedding's default), the MLP as nn.Linear's default.
        if (reparameterize)
        {
            embedding = nn.Embedding(tokens, config.HiddenSize, device: device);
            transform = nn.Sequential(
                nn.Linear(config.HiddenSize, projectionHiddenSize, device: device),
                nn.Tanh(),
                nn.Linear(projectionHiddenSize, width, device: device));
        }
        else
        {
            past_key_values = new Parameter(randn(tokens, width, device: device));
        }
        RegisterComponents();
    }

    /// <summary>True while the MLP reparameterisation is in place (before <see cref="Fold"/>).</summary>
    public bool IsReparameterized => transform is not null;

    /// <summary>Layer <paramref name="layer"/>'s keys and values, each [heads, P, headSize].</summary>
    public (Tensor Keys, Tensor Values) Layer(int layer)
    {
        long h2 = 2L * _heads * _headSize;
        Tensor kv; // [P, 2·H] for this layer only.
        if (transform is not null)
        {
            var (first, last) = Linears();
            var mid = first.forward(embedding!.weight!).tanh();
            // Only this layer's rows of the last projection: the other layers' prefixes are not needed here.
            kv = nn.functional.linear(mid, last.weight!.narrow(0, layer * h2, h2),
                last.bias!.narrow(0, layer * h2, h2));
        }
        else kv = past_key_values!.narrow(1, layer * h2, h2);
        var split = kv.reshape(_tokens, 2, _heads, _headSize).permute(1, 2, 0, 3); // [2, heads, P, headSize]
        return (split[0], split[1]);
    }

    /// <summary>
    /// Replaces the reparameterisation by the prefixes it produces now, as one plain parameter <c>past_key_values</c>
    /// (what is saved and loaded); a no-op when already plain.
    /// </summary>
    public void Fold()
    {
        if (transform is null) return;
        Tensor folded;
        using (no_grad())
        {
            var (first, last) = Linears();
            using var mid = first.forward(embedding!.weight!).tanh();
            folded = last.forward(mid);
        }
        bool trains = embedding!.weight!.requires_grad;
        var oldEmbedding = embedding;
        var oldTransform = transform;
        register_module(nameof(embedding), null!);
        register_module(nameof(transform), null!);
        embedding = null;
        transform = null;
        oldEmbedding.Dispose();
        oldTransform.Dispose();
        past_key_values = new Parameter(folded, requires_grad: trains);
        register_parameter(nameof(past_key_values), past_key_values);
    }

    private (Linear First, Linear Last) Linears()
    {
        var children = transform!.children().ToArray();
        return ((Linear)children[0], (Linear)children[2]);
    }

    /// <summary>
    /// Trainable parameters: <c>P·L·2·H</c> plain, or <c>P·H + H·m + m + m·L·2·H + L·2·H</c> reparameterised.
    /// </summary>
    public static long ParameterCount(int tokens, int layers, int hidden, bool reparameterize, int projectionHiddenSize)
    {
        long width = 2L * layers * hidden;
        return reparameterize
            ? (long)tokens * hidden + (long)hidden * projectionHiddenSize + projectionHiddenSize
                + projectionHiddenSize * width + width
            : tokens * width;
    }
}
