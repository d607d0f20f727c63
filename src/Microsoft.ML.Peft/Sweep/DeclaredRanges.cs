using System.Globalization;
using System.Reflection;
using Microsoft.ML.SearchSpace;

namespace Microsoft.ML.Peft.Sweep;

/// <summary>
/// Reads the sweep ranges an options class declares with Microsoft.ML.SearchSpace's <see cref="RangeAttribute"/>,
/// <see cref="ChoiceAttribute"/> and <see cref="BooleanChoiceAttribute"/> (as ML.NET AutoML's options do), so a
/// method's folder states its own search space next to its defaults.
/// </summary>
internal static class DeclaredRanges
{
    /// <summary>
    /// One parameter per attributed public settable property, base-class properties first, in declaration order.
    /// </summary>
    public static IReadOnlyList<SweepParameter> Of(Type optionsType)
    {
        var chain = new List<Type>();
        for (var t = optionsType; t is not null && t != typeof(object); t = t.BaseType) chain.Insert(0, t);
        var result = new List<SweepParameter>();
        foreach (var type in chain)
            foreach (var p in type
                .GetProperties(BindingFlags.Public | BindingFlags.Instance | BindingFlags.DeclaredOnly)
                .OrderBy(p => p.MetadataToken))
                if (PeftSearchSpace.Property(optionsType, p.Name) is not null && FromAttribute(p) is { } parameter)
                    result.Add(parameter);
        return result;
    }

    private static SweepParameter? FromAttribute(PropertyInfo p)
    {
        if (p.GetCustomAttribute<RangeAttribute>() is { } r)
        {
            static double D(object v) => Convert.ToDouble(v, CultureInfo.InvariantCulture);
            return new RangeParameter(p.Name, D(r.Min), D(r.Max), r.Init is null ? null : D(r.Init), r.LogBase,
                isInteger: r.Min is int);
        }
        if (p.GetCustomAttribute<ChoiceAttribute>() is { } c)
        {
            var choice = new ChoiceParameter(p.Name, c.Candidates.Select(v => v is float f ? (double)f : v).ToArray());
            return c.DefaultValue is null
                ? choice
                : choice.WithDefault(c.DefaultValue is float f ? (double)f : c.DefaultValue);
        }
        if (p.GetCustomAttribute<BooleanChoiceAttribute>() is { } b)
            return new ChoiceParameter(p.Name, b.DefaultValue, !b.DefaultValue);
        return null;
    }
}
