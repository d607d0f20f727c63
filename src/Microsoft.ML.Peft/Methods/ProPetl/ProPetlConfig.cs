using Microsoft.ML.Peft.Modeling;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Methods.ProPetl;

/// <summary>What the shared ProPETL prototype is.</summary>
public enum ProPetlPrototype
{
    /// <summary>A sequential bottleneck adapter after each layer's FFN (the paper's main setting).</summary>
    Adapter,
    /// <summary>LoRA pairs on <c>query</c> and <c>value</c>, one pair per projection shared by all layers.</summary>
    Lora,
}

/// <summary>
/// ProPETL (Zeng et al., 2023, "One Network, Many Masks"): ONE prototype module, stored once as
/// <c>propetl_prototype</c>, is shared by every layer; each layer sees it through its own binary masks over the
/// prototype's weight matrices (<c>...propetl_mask.down_mask</c>/<c>up_mask</c>, or
/// <c>lora_A_mask</c>/<c>lora_B_mask</c>). The masks come from real-valued scores: per matrix the top
/// (1 − <see cref="Sparsity"/>) of |score| are 1, the rest 0, trained with a straight-through estimator; at inference
/// they are hard, recomputed from the saved scores. The prototype starts as a zero update (adapter up-projection or
/// LoRA B at zero), so the untrained model equals the base.
/// Trainable parameters (h hidden, L layers): Adapter with bottleneck b: <c>(2hb + b + h) + L · 2hb</c> — MiniLM-L6,
/// b = 64: 49,600 + 294,912 = 344,512; Lora with rank r: <c>2 · 2hr + L · 2 · 2hr</c> — MiniLM-L6, r = 8:
/// 12,288 + 73,728 = 86,016 (plus the head). The scores are float parameters; the paper counts the masks as bits,
/// which is what they carry.
/// Mergeable for the Lora prototype (each layer's masked update folds into its weight); the adapter is not mergeable.
/// </summary>
public sealed class ProPetlConfig : PeftMethodConfig
{
    /// <summary>Name under which the shared prototype is registered on the model.</summary>
    internal const string PrototypeName = "propetl_prototype";

    /// <inheritdoc/>
    public override string MethodName => "propetl";

    /// <summary>The kind of shared prototype. Default <see cref="ProPetlPrototype.Adapter"/>.</summary>
    public ProPetlPrototype Prototype { get; set; } = ProPetlPrototype.Adapter;

    /// <summary>
    /// Fraction of each prototype weight matrix that a layer's mask zeroes (top 1 − sparsity of |score| are kept).
    /// Default 0.5.
    /// </summary>
    public double Sparsity { get; set; } = 0.5;

    /// <summary>Bottleneck width of the adapter prototype. Default 64.</summary>
    public int BottleneckSize { get; set; } = 64;

    /// <summary>Rank of the LoRA prototype. Default 8.</summary>
    public int Rank { get; set; } = 8;

    /// <summary>Scaling numerator of the LoRA prototype (update × alpha / r). Default 16.</summary>
    public double Alpha { get; set; } = 16;

    /// <summary>Dropout on the LoRA prototype's input during training. Default 0.1.</summary>
    public double Dropout { get; set; } = 0.1;

    /// <inheritdoc/>
    public override void Validate()
    {
        Require(Enum.IsDefined(Prototype), nameof(Prototype), $"must be Adapter or Lora, got {Prototype}.");
        Require(Sparsity is >= 0 and < 1, nameof(Sparsity), $"must be in [0, 1), got {Sparsity}.");
        Require(BottleneckSize >= 1, nameof(BottleneckSize), $"must be at least 1, got {BottleneckSize}.");
        Require(Rank >= 1, nameof(Rank), $"must be at least 1, got {Rank}.");
        Require(Alpha > 0 && double.IsFinite(Alpha), nameof(Alpha), $"must be positive, got {Alpha}.");
        Require(Dropout is >= 0 and < 1, nameof(Dropout), $"must be in [0, 1), got {Dropout}.");
    }

    internal override void Attach(PeftModel model)
    {
        var config = model.Encoder.Config;
        long hidden = config.HiddenSize;
        int layers = model.Encoder.Layers.Count;
        if (Prototype == ProPetlPrototype.Adapter)
        {
            var prototype = new AdapterPrototype(hidden, BottleneckSize);
            // Registered once on the root: every layer holds it by reference, so its parameters count, train and
            // save once.
            model.register_module(PrototypeName, prototype);
            var shared = new Shared<AdapterPrototype>(prototype);
            for (int i = 0; i < layers; i++)
            {
                string path = $"bert.encoder.layer.{i}.output.dense";
                var dense = (nn.Module<Tensor, Tensor>)ModuleSurgery.Get(model, path);
                ModuleSurgery.Replace(model, path,
                    new ProPetlAdapterLayer(dense, shared, hidden, BottleneckSize, Sparsity));
            }
        }
        else
        {
            var prototype = new LoraPrototype(hidden, Rank);
            model.register_module(PrototypeName, prototype);
            var query = new Shared<LoraPairPrototype>(prototype.query);
            var value = new Shared<LoraPairPrototype>(prototype.value);
            double scaling = Alpha / Rank;
            for (int i = 0; i < layers; i++)
                foreach (var (name, pair) in new[] { ("query", query), ("value", value) })
                {
                    string path = $"bert.encoder.layer.{i}.attention.self.{name}";
                    if (ModuleSurgery.Get(model, path) is not Linear linear)
                        throw new InvalidOperationException(
                            $"ProPETL's LoRA prototype needs a plain linear layer at '{path}'.");
                    ModuleSurgery.Replace(model, path,
                        new ProPetlLoraLinear(linear, pair, Rank, scaling, Dropout, Sparsity));
                }
        }
    }

    internal override bool IsTrainable(string name) =>
        name.StartsWith(PrototypeName + ".", StringComparison.Ordinal)
        || name.Contains(".propetl_mask.", StringComparison.Ordinal);

    internal override bool Merge(PeftModel model)
    {
        if (Prototype != ProPetlPrototype.Lora) return false;
        foreach (var (_, m) in ModuleSurgery.NamedModules(model)) if (m is ProPetlLoraLinear l) l.Merge();
        return true;
    }

    internal override Onnx.OnnxMethodExport CreateOnnxExport() => new ProPetlOnnxExport(Sparsity, Alpha / Rank);

    internal override void Unmerge(PeftModel model)
    {
        foreach (var (_, m) in ModuleSurgery.NamedModules(model)) if (m is ProPetlLoraLinear l) l.Unmerge();
    }
}
