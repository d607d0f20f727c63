namespace Microsoft.ML.Peft.Inference;

/// <summary>
/// Regression trains on standardised targets (with few trainable weights, Adam's bounded steps would otherwise spend
/// most of the budget moving the head's bias to the label mean). This one object standardises the labels before
/// training, reports errors in label units during it and turns outputs back into label units when scoring.
/// Classification uses <see cref="Identity"/>.
/// </summary>
internal sealed record LabelScaler(double Shift, double Scale)
{
    public static LabelScaler Identity { get; } = new(0, 1);

    /// <summary>
    /// Mean and (population) standard deviation of <paramref name="labels"/>; scale 1 when they are constant.
    /// </summary>
    public static LabelScaler Fit(IReadOnlyList<float> labels)
    {
        double shift = labels.Average();
        double sd = Math.Sqrt(labels.Sum(y => (y - shift) * (y - shift)) / labels.Count);
        return new LabelScaler(shift, sd > 1e-12 ? sd : 1);
    }

    /// <summary>Replaces each label by (label − shift) / scale.</summary>
    public void Standardise(List<float> labels)
    {
        if (this == Identity) return; // classification: class indices stay as they are
        for (int i = 0; i < labels.Count; i++) labels[i] = (float)((labels[i] - Shift) / Scale);
    }

    /// <summary>A standardised output in label units.</summary>
    public float ToLabelUnits(float output) => (float)(output * Scale + Shift);

    /// <summary>An error (RMSE, MAE) measured on standardised values, in label units.</summary>
    public double ErrorToLabelUnits(double error) => error * Scale;
}
