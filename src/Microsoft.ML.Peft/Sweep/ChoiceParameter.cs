using System.Globalization;

namespace Microsoft.ML.Peft.Sweep;

/// <summary>
/// A parameter that takes one of a few values (numbers, strings, booleans, enum names). Values keep their order in the
/// normalised space, so ordered choices such as ranks {4, 8, 16} support local search. A comma-separated string sets a
/// string-array option (e.g. <c>"query,value"</c> for <c>TargetModules</c>).
/// </summary>
public sealed class ChoiceParameter : SweepParameter
{
    /// <summary>Creates a choice; the first value is the default.</summary>
    /// <param name="name">The option property to set.</param>
    /// <param name="values">Candidate values (at least one; string, bool, int, long or double).</param>
    public ChoiceParameter(string name, params object[] values) : this(name, 0, values) { }

    private ChoiceParameter(string name, int defaultIndex, object[] values) : base(name)
    {
        ArgumentNullException.ThrowIfNull(values);
        if (values.Length == 0)
            throw new ArgumentException($"Choice '{name}' needs at least one value.", nameof(values));
        if (values.Any(v => v is not (string or bool or int or long or double)))
            throw new ArgumentException(
                $"Choice '{name}' values must be string, bool, int, long or double.", nameof(values));
        if (defaultIndex < 0 || defaultIndex >= values.Length)
            throw new ArgumentOutOfRangeException(nameof(defaultIndex));
        Values = values.ToArray();
        DefaultIndex = defaultIndex;
    }

    /// <summary>The same choice starting from <paramref name="value"/> (one of <see cref="Values"/>).</summary>
    public ChoiceParameter WithDefault(object value)
    {
        int i = IndexOf(value);
        if (i < 0) throw new ArgumentOutOfRangeException(nameof(value), $"{value} is not a value of choice '{Name}'.");
        return new ChoiceParameter(Name, i, Values.ToArray());
    }

    /// <summary>The candidate values, in order.</summary>
    public IReadOnlyList<object> Values { get; }

    /// <summary>Index of the default value.</summary>
    public int DefaultIndex { get; }

    /// <inheritdoc/>
    public override object Default => Values[DefaultIndex];

    internal override double ToUnit(object value)
    {
        int i = IndexOf(value);
        if (i < 0) throw new ArgumentOutOfRangeException(nameof(value), $"{value} is not a value of choice '{Name}'.");
        return Values.Count == 1 ? 0.5 : (double)i / (Values.Count - 1);
    }

    internal override object FromUnit(double unit)
    {
        unit = Math.Clamp(double.IsFinite(unit) ? unit : 0, 0, 1);
        return Values[Math.Min(Values.Count - 1, (int)Math.Floor(unit * Values.Count))];
    }

    internal override IReadOnlyList<object> GridValues() => Values;

    internal override bool Contains(object value) => IndexOf(value) >= 0;

    private int IndexOf(object value)
    {
        for (int i = 0; i < Values.Count; i++)
            if (SameValue(Values[i], value)) return i;
        return -1;
    }

    /// <summary>
    /// Values compare by their invariant text, so 8 (int), 8L and 8.0 read back from JSON are the same.
    /// </summary>
    internal static bool SameValue(object a, object b) =>
        string.Equals(Convert.ToString(a, CultureInfo.InvariantCulture),
            Convert.ToString(b, CultureInfo.InvariantCulture), StringComparison.Ordinal);
}
