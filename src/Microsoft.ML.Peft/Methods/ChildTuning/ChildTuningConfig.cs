using Microsoft.ML.Peft.Modeling;

namespace Microsoft.ML.Peft.Methods.ChildTuning;

/// <summary>
/// Child-Tuning<sub>D</sub> (Xu et al., 2021): full fine-tuning in which only a task-chosen "child network" of the
/// encoder changes. Before the first step the Fisher information of every encoder weight is estimated from
/// <see cref="FisherBatches"/> training batches (the sum of its squared gradients); the <see cref="ReserveRatio"/>
/// share of weights with the highest scores, ranked globally across all encoder tensors, forms the child network, and
/// every later gradient outside it is zeroed.
/// Trainable parameters: every encoder parameter has <c>requires_grad</c>, so the reported count (and the saved model)
/// is the whole encoder plus the head, as for full fine-tuning; of the encoder's entries exactly
/// <c>round(ReserveRatio · encoder parameters)</c> can change. For MiniLM-L6 (22,565,376 encoder weights, no pooler)
/// with the default 0.3: 6,769,613 entries change, while 22,565,376 + 770 are reported trainable. Nothing to merge.
/// </summary>
/// <remarks>
/// Deviations from the reference code: its mask covers only the transformer layers (names containing <c>layer</c>) and
/// lets the embeddings and pooler train unmasked; here the mask covers every encoder parameter, so
/// <see cref="ReserveRatio"/> bounds all of the encoder's change. It divides squared gradients by the batch count
/// (which does not change the ranking) and can clip each tensor's gradient first (not done here). Its optimizer applies
/// weight decay to masked-out weights as well; here they are put back after each step, so they stay exactly at their
/// pretrained values.
/// The masks (one byte per weight) and the starting values of the weights outside the child network live only while
/// training.
/// </remarks>
public sealed class ChildTuningConfig : PeftMethodConfig
{
    private ChildTuningMask? _mask;

    /// <inheritdoc/>
    public override string MethodName => "child-tuning";

    /// <summary>
    /// 3e-5, as full fine-tuning: Child-Tuning is full fine-tuning with masked gradients, and the paper trains it with
    /// vanilla fine-tuning's settings.
    /// </summary>
    public override double DefaultLearningRate => 3e-5;

    /// <summary>
    /// Share of encoder weights in the child network, in (0, 1]. Default 0.3 (the paper searches 0.1 to 0.3).
    /// </summary>
    public double ReserveRatio { get; set; } = 0.3;

    /// <summary>
    /// Training batches used to estimate the Fisher information (at least 1; fewer when the data run out). Default 16.
    /// </summary>
    public int FisherBatches { get; set; } = 16;

    /// <inheritdoc/>
    public override void Validate()
    {
        Require(ReserveRatio is > 0 and <= 1, nameof(ReserveRatio), $"must be in (0, 1], got {ReserveRatio}.");
        Require(FisherBatches >= 1, nameof(FisherBatches), $"must be at least 1, got {FisherBatches}.");
    }

    // Nothing to add: the method only restricts which entries of the existing weights may change.
    internal override void Attach(PeftModel model) { }

    internal override bool IsTrainable(string name) => name.StartsWith("bert.", StringComparison.Ordinal);

    /// <summary>
    /// The current child network (null before training starts and after <see cref="PrepareForInference"/>).
    /// </summary>
    internal ChildTuningMask? Mask => _mask;

    internal override void OnTrainingStart(PeftModel model, ITrainingProbe probe)
    {
        _mask?.Dispose();
        var masked = model.TrainableParameters().Where(p => IsTrainable(p.Name)).ToList();
        _mask = ChildTuningMask.Estimate(model, probe, masked, FisherBatches, ReserveRatio);
    }

    internal override void OnAfterBackward(PeftModel model) => _mask?.MaskGradients();

    internal override void OnStepEnd(PeftModel model, int step, int totalSteps) => _mask?.RestoreFrozen();

    // The masks only steer training; the trained weights are the inference form.
    internal override void PrepareForInference(PeftModel model)
    {
        _mask?.Dispose();
        _mask = null;
    }
}
