using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Peft.Modeling;

namespace Microsoft.ML.Peft.HuggingFace;

/// <summary>
/// Tensor names of transformers' <c>BertForSequenceClassification</c>, <c>RobertaForSequenceClassification</c> and
/// <c>DistilBertForSequenceClassification</c> (as peft saves them, after <c>base_model.model.</c>) and this library's:
/// the backbone (<c>bert.</c>, <c>roberta.</c>, <c>distilbert.</c> with DistilBERT's own module names) becomes
/// <c>bert.</c> with BERT's names (<see cref="CheckpointNames"/>), and the heads map onto the stage's pooling,
/// <c>pre_classifier</c> and <c>classifier</c>: RoBERTa's <c>classifier.dense</c> is the head layer and its
/// <c>classifier.out_proj</c> the classifier; DistilBERT's names are already the stage's.
/// </summary>
internal static class TransformersNames
{
    private const string RobertaDense = "classifier.dense.", RobertaOut = "classifier.out_proj.";

    /// <summary>How transformers' head for <paramref name="architecture"/> pools.</summary>
    public static Pooling Pooling(EncoderArchitecture architecture) =>
        architecture == EncoderArchitecture.Bert ? Modeling.Pooling.Pooler : Modeling.Pooling.Cls;

    /// <summary>The hidden layer of transformers' head for <paramref name="architecture"/>.</summary>
    public static HeadLayer HeadLayer(EncoderArchitecture architecture) => architecture switch
    {
        EncoderArchitecture.Roberta => Modeling.HeadLayer.DenseTanh,
        EncoderArchitecture.DistilBert => Modeling.HeadLayer.DenseRelu,
        _ => Modeling.HeadLayer.None,
    };

    /// <summary>
    /// This library's name for <paramref name="name"/> (a tensor of the <paramref name="architecture"/> model, prefix
    /// removed); a backbone of another architecture is an error naming <paramref name="file"/> and
    /// <paramref name="shown"/>.
    /// </summary>
    public static string ToLibrary(string name, EncoderArchitecture architecture, string file, string shown)
    {
        string backbone = Backbone(architecture);
        if (name.StartsWith(backbone, StringComparison.Ordinal))
            return "bert." + (CheckpointNames.ToEncoderName(name, architecture)
                ?? throw new PeftModelFormatException($"{file}: tensor '{shown}' belongs to no module of the "
                    + $"{architecture} encoder."));
        foreach (var other in Enum.GetValues<EncoderArchitecture>())
            if (other != architecture && name.StartsWith(Backbone(other), StringComparison.Ordinal))
                throw new PeftModelFormatException($"{file}: tensor '{shown}' belongs to a {other} model, but the "
                    + $"base model given is {architecture}.");
        if (architecture == EncoderArchitecture.Roberta)
        {
            if (name.StartsWith(RobertaDense, StringComparison.Ordinal))
                return "pre_classifier." + name[RobertaDense.Length..];
            if (name.StartsWith(RobertaOut, StringComparison.Ordinal))
                return "classifier." + name[RobertaOut.Length..];
        }
        return name;
    }

    /// <summary>The transformers name of this library's <paramref name="name"/>, for messages (the inverse of
    /// <see cref="ToLibrary"/> up to DistilBERT's module names).</summary>
    public static string ToTransformers(string name, EncoderArchitecture architecture)
    {
        if (name.StartsWith("bert.", StringComparison.Ordinal)) return Backbone(architecture) + name["bert.".Length..];
        if (architecture != EncoderArchitecture.Roberta) return name;
        if (name.StartsWith("pre_classifier.", StringComparison.Ordinal))
            return RobertaDense + name["pre_classifier.".Length..];
        if (name.StartsWith("classifier.", StringComparison.Ordinal))
            return RobertaOut + name["classifier.".Length..];
        return name;
    }

    private static string Backbone(EncoderArchitecture architecture) => architecture switch
    {
        EncoderArchitecture.Roberta => "roberta.",
        EncoderArchitecture.DistilBert => "distilbert.",
        _ => "bert.",
    };
}
