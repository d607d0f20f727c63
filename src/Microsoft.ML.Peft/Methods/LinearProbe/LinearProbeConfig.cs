namespace Microsoft.ML.Peft.Methods.LinearProbe;

/// <summary>
/// Linear probing: the encoder stays frozen and only the task head trains. The cheapest baseline every PEFT method
/// should beat. Trainable parameters: the head alone (hidden · outputs + outputs; 770 for MiniLM with two classes).
/// </summary>
public sealed class LinearProbeConfig : PeftMethodConfig
{
    /// <inheritdoc/>
    public override string MethodName => "linear-probe";

    /// <summary>1e-2: a single linear layer on frozen features tolerates large steps.</summary>
    public override double DefaultLearningRate => 1e-2;

    /// <inheritdoc/>
    public override void Validate() { }

    internal override void Attach(Modeling.PeftModel model) { }

    internal override bool IsTrainable(string parameterName) => false;

    /// <inheritdoc/>
    internal override bool FreezesEncoder => true;
}
