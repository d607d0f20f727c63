namespace Microsoft.ML.Peft.Methods.Full;

/// <summary>
/// Full fine-tuning: every encoder weight trains. The reference the parameter-efficient methods are measured against;
/// its saved model holds the whole encoder. Trainable parameters: all of them.
/// </summary>
public sealed class FullFineTuningConfig : PeftMethodConfig
{
    /// <inheritdoc/>
    public override string MethodName => "full";

    /// <summary>3e-5, as Hugging Face's GLUE examples use for BERT-sized encoders.</summary>
    public override double DefaultLearningRate => 3e-5;

    /// <inheritdoc/>
    public override void Validate() { }

    internal override void Attach(Modeling.PeftModel model) { }

    internal override bool IsTrainable(string parameterName) => true;

    /// <summary>The whole model trained: it goes out as a plain <c>transformers</c> folder, not a peft adapter.
    /// </summary>
    internal override HuggingFace.PeftAdapterMapping CreatePeftAdapterMapping() =>
        HuggingFace.WholeModelMapping.Instance;
}
