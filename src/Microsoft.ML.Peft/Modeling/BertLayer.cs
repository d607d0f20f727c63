using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Modeling;

/// <summary>The feed-forward expansion with its activation (Hugging Face <c>intermediate</c>).</summary>
public sealed class BertIntermediate : nn.Module<Tensor, Tensor>
{
    private readonly Func<Tensor, Tensor> _activation;
    internal nn.Module<Tensor, Tensor> dense;

    /// <summary>Optional per-channel rescaling of the activations ((IA)³-style methods); null when absent.</summary>
    internal nn.Module<Tensor, Tensor>? ActivationScale { get; set; }

    /// <summary>Creates the expansion layer.</summary>
    public BertIntermediate(EncoderConfig config) : base("intermediate")
    {
        _activation = Activations.Get(config.HiddenAct);
        dense = nn.Linear(config.HiddenSize, config.IntermediateSize);
        RegisterComponents();
    }

    /// <summary>Returns activation(dense(<paramref name="hidden"/>)).</summary>
    public override Tensor forward(Tensor hidden)
    {
        using var scope = NewDisposeScope();
        var a = _activation(dense.forward(hidden));
        if (ActivationScale is not null) a = ActivationScale.forward(a);
        return a.MoveToOuterDisposeScope();
    }
}

/// <summary>One transformer layer (Hugging Face <c>encoder.layer.N</c>).</summary>
public sealed class BertLayer : nn.Module<Tensor, Tensor, Tensor>
{
    internal readonly BertAttention attention;
    internal readonly BertIntermediate intermediate;
    internal readonly BertResidualOutput output;

    /// <summary>Creates one layer.</summary>
    public BertLayer(EncoderConfig config) : base("layer")
    {
        attention = new BertAttention(config);
        intermediate = new BertIntermediate(config);
        output = new BertResidualOutput(config, config.IntermediateSize);
        RegisterComponents();
    }

    /// <summary>Runs attention then the feed-forward block.</summary>
    public override Tensor forward(Tensor hidden, Tensor additiveMask)
    {
        using var scope = NewDisposeScope();
        var attended = attention.forward(hidden, additiveMask);
        return output.forward(intermediate.forward(attended), attended).MoveToOuterDisposeScope();
    }
}
