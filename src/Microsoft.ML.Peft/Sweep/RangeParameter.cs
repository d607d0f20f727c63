namespace Microsoft.ML.Peft.Sweep;

/// <summary>
/// A numeric parameter in [<see cref="Min"/>, <see cref="Max"/>], linear or log-uniform, integer or real.
/// </summary>
public sealed class RangeParameter : SweepParameter
{
    /// <summary>Creates a range.</summary>
    /// <param name="name">The option property to set.</param>
    /// <param name="min">Smallest value.</param>
    /// <param name="max">Largest value (at least <paramref name="min"/>).</param>
    /// <param name="defaultValue">Starting value; null for the midpoint of the normalised space.</param>
    /// <param name="logScale">Sample uniformly in log space (needs <paramref name="min"/> &gt; 0).</param>
    /// <param name="isInteger">Round values to integers.</param>
    /// <param name="gridPoints">How many evenly spaced (in the normalised space) values a grid search tries.</param>
    public RangeParameter(string name, double min, double max, double? defaultValue = null, bool logScale = false,
        bool isInteger = false, int gridPoints = 3)
        : base(name)
    {
        if (!double.IsFinite(min) || !double.IsFinite(max) || max < min)
            throw new ArgumentOutOfRangeException(nameof(max), $"Range '{name}' needs finite min <= max.");
        if (logScale && min <= 0)
            throw new ArgumentOutOfRangeException(nameof(min), $"Log-scale range '{name}' needs min > 0.");
        if (gridPoints < 1) throw new ArgumentOutOfRangeException(nameof(gridPoints));
        Min = min; Max = max; LogScale = logScale; IsInteger = isInteger; GridPoints = gridPoints;
        if (defaultValue is { } d && (d < min || d > max))
            throw new ArgumentOutOfRangeException(nameof(defaultValue),
                $"Default of range '{name}' is outside [{min}, {max}].");
        Default = defaultValue is { } v ? Round(v) : FromUnit(0.5);
    }

    /// <summary>Smallest value.</summary>
    public double Min { get; }

    /// <summary>Largest value.</summary>
    public double Max { get; }

    /// <summary>Log-uniform when true.</summary>
    public bool LogScale { get; }

    /// <summary>Integer values when true.</summary>
    public bool IsInteger { get; }

    /// <summary>Values a grid search tries.</summary>
    public int GridPoints { get; }

    /// <inheritdoc/>
    public override object Default { get; }

    internal override double ToUnit(object value)
    {
        double v = Convert.ToDouble(value, System.Globalization.CultureInfo.InvariantCulture);
        if (Max == Min) return 0.5;
        return Math.Clamp(LogScale ? Math.Log(v / Min) / Math.Log(Max / Min) : (v - Min) / (Max - Min), 0, 1);
    }

    internal override object FromUnit(double unit)
    {
        unit = Math.Clamp(double.IsFinite(unit) ? unit : 0, 0, 1);
        double v = LogScale ? Min * Math.Pow(Max / Min, unit) : Min + unit * (Max - Min);
        return Round(Math.Clamp(v, Min, Max));
    }

    internal override IReadOnlyList<object> GridValues()
    {
        if (GridPoints == 1) return [Default];
        var values = new List<object>();
        for (int i = 0; i < GridPoints; i++)
        {
            var v = FromUnit((double)i / (GridPoints - 1));
            if (!values.Any(x => ChoiceParameter.SameValue(x, v))) values.Add(v);
        }
        return values;
    }

    internal override bool Contains(object value)
    {
        double v = Convert.ToDouble(value, System.Globalization.CultureInfo.InvariantCulture);
        return v >= Min - 1e-12 * Math.Abs(Min) && v <= Max + 1e-12 * Math.Abs(Max)
            && (!IsInteger || v == Math.Round(v));
    }

    private object Round(double v) => IsInteger ? (int)Math.Round(v) : (object)v;
}
