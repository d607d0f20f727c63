namespace Microsoft.ML.Peft.Sweep;

/// <summary>
/// One searchable hyper-parameter. Its <see cref="Name"/> is a public settable property of the method's config class
/// (e.g. <c>Rank</c> of <c>LoraConfig</c>) or of the stage options (e.g. <c>LearningRate</c>); the method config is
/// looked up first. Tuners work in a normalised space: every parameter maps its values onto [0, 1].
/// </summary>
public abstract class SweepParameter
{
    /// <summary>Creates a parameter.</summary>
    private protected SweepParameter(string name)
    {
        if (string.IsNullOrWhiteSpace(name))
            throw new ArgumentException("A sweep parameter needs a name.", nameof(name));
        Name = name;
    }

    /// <summary>The option property this parameter sets.</summary>
    public string Name { get; }

    /// <summary>The value a cost-frugal search starts from.</summary>
    public abstract object Default { get; }

    /// <summary>A uniformly random value (uniform in the normalised space).</summary>
    internal object Sample(Random rng) => FromUnit(rng.NextDouble());

    /// <summary>Position of <paramref name="value"/> in [0, 1].</summary>
    internal abstract double ToUnit(object value);

    /// <summary>The value at position <paramref name="unit"/> in [0, 1] (clamped).</summary>
    internal abstract object FromUnit(double unit);

    /// <summary>The values a grid search tries.</summary>
    internal abstract IReadOnlyList<object> GridValues();

    /// <summary>True when <paramref name="value"/> is one this parameter can produce.</summary>
    internal abstract bool Contains(object value);
}
