using Microsoft.ML.Peft.Modeling;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using Microsoft.ML.SearchSpace;

namespace Microsoft.ML.Peft.Methods.Prefix;

/// <summary>
/// Prefix tuning (Li &amp; Liang, 2021; P-tuning v2, Liu et al., 2022; <c>peft</c>'s <c>PrefixTuningConfig</c>): every
/// layer's self-attention also attends to P trainable key/value positions, which every token sees. By default the
/// prefixes are trained directly (peft's default, P-tuning v2); with <see cref="Reparameterize"/> they come from an MLP
/// over P embeddings (Li &amp; Liang), which is folded away into plain prefixes after training, so a saved model always
/// holds the prefixes themselves. The output differs from the base model's from the start (as in peft); not mergeable.
/// Trainable parameters with L layers and hidden size H: plain, and after folding, <c>P·L·2·H</c>; reparameterised,
/// while training, with m = <see cref="ProjectionHiddenSize"/>: <c>P·H + H·m + m + m·L·2·H + L·2·H</c>.
/// MiniLM-L6 (L = 6, H = 384), P = 20: 92,160 (2,568,704 while training with the MLP).
/// </summary>
/// <remarks>
/// The MLP is off by default because, with the one learning rate the stage gives the head and the method, it either
/// barely moved or collapsed the encoder's output in short runs on MiniLM (Li &amp; Liang trained it at 5e-5 for
/// many epochs); P-tuning v2 likewise found it unnecessary for classification with encoders.
/// </remarks>
public sealed class PrefixTuningConfig : PeftMethodConfig
{
    /// <inheritdoc/>
    public override string MethodName => "prefix";

    /// <summary>
    /// 1e-2: prefixes need a larger step than weight updates (P-tuning v2 used 5e-3 to 1e-2 on BERT-sized encoders).
    /// </summary>
    public override double DefaultLearningRate => 1e-2;

    /// <summary>Number P of virtual key/value positions per layer. Default 20. Sweep range: {10, 20, 30}.</summary>
    [Choice(new object[] { 10, 20, 30 }, 20)]
    public int NumVirtualTokens { get; set; } = 20;

    /// <summary>
    /// Train the prefixes through an MLP (peft's <c>prefix_projection</c>), folded away after training. Default false
    /// (as peft).
    /// </summary>
    public bool Reparameterize { get; set; }

    /// <summary>
    /// Hidden width m of the reparameterisation MLP (peft's <c>encoder_hidden_size</c>). Default 512 (Li &amp; Liang).
    /// </summary>
    public int ProjectionHiddenSize { get; set; } = 512;

    /// <summary>
    /// Compute as Hugging Face <c>peft</c>'s <c>PREFIX_TUNING</c> does with transformers' BERT, so that
    /// <c>SavePretrained</c> can write the stage as a peft adapter (and <c>FromPretrained</c> reads peft's): the text's
    /// position ids start at <see cref="NumVirtualTokens"/> instead of 0, as BERT counts them after
    /// <c>past_key_values</c>, which leaves <see cref="NumVirtualTokens"/> fewer positions for the text. BERT bases
    /// only. Default false (positions as without prefixes).
    /// </summary>
    public bool PeftLayout { get; set; }

    /// <summary>UniPELT's per-layer gate on the prefixes; set by methods that compose this one.</summary>
    internal bool Gated { get; set; }

    /// <inheritdoc/>
    public override void Validate()
    {
        Require(NumVirtualTokens >= 1, nameof(NumVirtualTokens), $"must be at least 1, got {NumVirtualTokens}.");
        Require(ProjectionHiddenSize >= 1, nameof(ProjectionHiddenSize),
            $"must be at least 1, got {ProjectionHiddenSize}.");
    }

    internal override void Attach(PeftModel model)
    {
        var config = model.Encoder.Config;
        var device = model.classifier.weight!.device;
        var encoder = new PrefixEncoder(config, NumVirtualTokens, Reparameterize, ProjectionHiddenSize, device);
        model.register_module(PrefixEncoder.ChildName, encoder);
        if (PeftLayout)
        {
            if (config.Architecture != EncoderArchitecture.Bert)
                throw new NotSupportedException($"Option 'PeftLayout' reproduces transformers' BERT; this base is "
                    + $"{config.Architecture}.");
            model.Encoder.PositionOffset = NumVirtualTokens;
        }
        for (int l = 0; l < model.Encoder.Layers.Count; l++)
        {
            var self = model.Encoder.Layers[l].attention.self;
            if (self.Prefix is not null)
                throw new InvalidOperationException(
                    "This encoder already carries prefixes; attach one prefix method per model.");
            Linear? gate = null;
            if (Gated)
            {
                gate = nn.Linear(config.HiddenSize, 1, device: device);
                using (no_grad())
                {
                    nn.init.normal_(gate.weight!, 0, 0.02);
                    nn.init.zeros_(gate.bias!);
                }
                self.register_module(GateName, gate);
            }
            self.Prefix = new PrefixLayer(encoder, l, gate);
        }
    }

    private const string GateName = "prefix_gate";

    internal override bool IsTrainable(string parameterName) =>
        parameterName.StartsWith(PrefixEncoder.ChildName + ".", StringComparison.Ordinal)
        || (Gated && parameterName.Contains(".attention.self." + GateName + ".", StringComparison.Ordinal));

    /// <summary>The saved prefixes as constants in each layer's attention (UniPELT exports its gated ones itself).
    /// </summary>
    internal override Onnx.OnnxMethodExport CreateOnnxExport() => new PrefixOnnxExport(PeftLayout);

    /// <inheritdoc/>
    internal override int ReservedPositions => PeftLayout ? NumVirtualTokens : 0;

    /// <summary>
    /// peft's <c>PREFIX_TUNING</c> with <see cref="PeftLayout"/>. Without it, refused: transformers' BERT counts the
    /// text's position ids from the number of cached (prefix) positions (BertEmbeddings, past_key_values_length),
    /// while this stage's text keeps positions 0, 1, ... as without prefixes.
    /// </summary>
    internal override HuggingFace.PeftAdapterMapping CreatePeftAdapterMapping() => PeftLayout && !Gated
        ? new PrefixPeftMapping(this)
        : throw new NotSupportedException(
            "Prefix tuning trained without PeftLayout cannot be saved as a peft PREFIX_TUNING adapter: transformers' "
            + "BERT shifts the text's position ids by the prefix length when given past_key_values, and this stage "
            + "did not, so peft would score differently. Train with PrefixTuningConfig.PeftLayout = true to export. "
            + "See docs/huggingface.md.");

    /// <summary>
    /// Folds the reparameterisation into plain prefixes: after training, and on load before the saved prefixes are
    /// copied in.
    /// </summary>
    internal override void PrepareForInference(PeftModel model) =>
        ((PrefixEncoder)ModuleSurgery.Get(model, PrefixEncoder.ChildName)).Fold();
}
