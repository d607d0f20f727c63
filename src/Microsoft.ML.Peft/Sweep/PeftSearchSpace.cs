using System.Reflection;
using Microsoft.ML.Peft.Methods;
using Microsoft.ML.Peft.MLNet;

namespace Microsoft.ML.Peft.Sweep;

/// <summary>
/// What a sweep searches: the method is a choice among <see cref="Methods"/>; each method has its own (conditional)
/// parameters, which only apply when that method is chosen; <see cref="Shared"/> parameters apply to every method.
/// Narrow or widen it in code with <see cref="AddMethod"/>, <see cref="RemoveMethod"/>, <see cref="SetShared"/> and
/// <see cref="RemoveShared"/>.
/// </summary>
public sealed class PeftSearchSpace
{
    private readonly List<string> _methodOrder = [];
    private readonly Dictionary<string, List<SweepParameter>> _methods = new(StringComparer.Ordinal);
    private readonly List<SweepParameter> _shared = [];

    /// <summary>Method names, in the order they were added (the first is where a cost-frugal search starts).</summary>
    public IReadOnlyList<string> Methods => _methodOrder;

    /// <summary>Parameters every method shares (learning rate, epochs, ...).</summary>
    public IReadOnlyList<SweepParameter> Shared => _shared;

    /// <summary>The conditional parameters of <paramref name="method"/>.</summary>
    public IReadOnlyList<SweepParameter> MethodParameters(string method) =>
        _methods.TryGetValue(method, out var list)
            ? list
            : throw new KeyNotFoundException($"Method '{method}' is not in the search space.");

    /// <summary>
    /// Every parameter that applies when <paramref name="method"/> is chosen: shared first, then the method's own.
    /// </summary>
    public IReadOnlyList<SweepParameter> ParametersOf(string method) => [.. _shared, .. MethodParameters(method)];

    /// <summary>
    /// Adds (or replaces) a method with its conditional parameters; the name must be one of
    /// <see cref="PeftMethodConfig.KnownMethods"/>.
    /// </summary>
    public PeftSearchSpace AddMethod(string method, params SweepParameter[] parameters)
    {
        ArgumentNullException.ThrowIfNull(method);
        if (!PeftMethodConfig.KnownMethods.Contains(method))
            throw new ArgumentException(
                $"Unknown PEFT method '{method}'. Known: {string.Join(", ", PeftMethodConfig.KnownMethods.Order())}.",
                nameof(method));
        var type = ConfigType(method);
        foreach (var p in parameters) CheckSettable(p, type);
        if (parameters.Select(p => p.Name).Distinct().Count() != parameters.Length)
            throw new ArgumentException($"Method '{method}' has a parameter twice.");
        if (!_methods.ContainsKey(method)) _methodOrder.Add(method);
        _methods[method] = [.. parameters];
        return this;
    }

    /// <summary>
    /// Adds (or replaces) a method with the ranges its options class declares with Microsoft.ML.SearchSpace's
    /// <c>[Range]</c>/<c>[Choice]</c>/<c>[BooleanChoice]</c> attributes (e.g. LoRA's rank {4, 8, 16}); a method that
    /// declares none is searched with its defaults.
    /// </summary>
    public PeftSearchSpace AddMethodWithDeclaredRanges(string method)
    {
        ArgumentNullException.ThrowIfNull(method);
        if (!PeftMethodConfig.KnownMethods.Contains(method)) return AddMethod(method);
        return AddMethod(method, [.. DeclaredRanges.Of(ConfigType(method))]);
    }

    /// <summary>
    /// Sets as shared parameters every range the stage options declare (learning rate, epochs, batch size, head
    /// dropout, max length).
    /// </summary>
    public PeftSearchSpace SetSharedFromDeclaredRanges()
    {
        foreach (var p in DeclaredRanges.Of(typeof(PeftTextClassificationOptions))) SetShared(p);
        return this;
    }

    /// <summary>Removes a method.</summary>
    public PeftSearchSpace RemoveMethod(string method)
    {
        if (_methods.Remove(method)) _methodOrder.Remove(method);
        return this;
    }

    /// <summary>Adds or replaces a shared parameter (a property of the stage options).</summary>
    public PeftSearchSpace SetShared(SweepParameter parameter)
    {
        ArgumentNullException.ThrowIfNull(parameter);
        CheckSettable(parameter, null);
        int i = _shared.FindIndex(p => p.Name == parameter.Name);
        if (i >= 0) _shared[i] = parameter; else _shared.Add(parameter);
        return this;
    }

    /// <summary>Removes a shared parameter (the stage's own default then applies).</summary>
    public PeftSearchSpace RemoveShared(string name)
    {
        _shared.RemoveAll(p => p.Name == name);
        return this;
    }

    /// <summary>
    /// The default space, from the ranges the options classes declare: shared learning rate (log-uniform 1e-4 to 1e-2,
    /// starting at 2e-3), epochs 1 to 5 (starting at 1, the cheap end), batch size {32, 16}, head dropout and max
    /// length {128, 64}; methods LoRA (rank {4, 8, 16}, alpha, dropout, target modules; the start), DoRA (the same),
    /// IA3, bottleneck adapters (reduction factor), prefix tuning (virtual tokens) and BitFit.
    /// </summary>
    public static PeftSearchSpace CreateDefault() => new PeftSearchSpace()
        .SetSharedFromDeclaredRanges()
        .AddMethodWithDeclaredRanges("lora")
        .AddMethodWithDeclaredRanges("dora")
        .AddMethodWithDeclaredRanges("ia3")
        .AddMethodWithDeclaredRanges("adapter")
        .AddMethodWithDeclaredRanges("prefix")
        .AddMethodWithDeclaredRanges("bitfit");

    private static Type ConfigType(string method) =>
        PeftMethodConfig.FromJson($"{{\"method\":\"{method}\",\"options\":{{}}}}").GetType();

    internal void Validate()
    {
        if (_methodOrder.Count == 0) throw new InvalidOperationException("The search space has no method.");
    }

    private static void CheckSettable(SweepParameter p, Type? methodType)
    {
        if (Property(methodType, p.Name) is null && Property(typeof(PeftTextClassificationOptions), p.Name) is null)
            throw new ArgumentException(
                $"Parameter '{p.Name}' is not a settable option of " +
                $"{(methodType?.Name + " or ") ?? ""}the stage options.");
    }

    internal static PropertyInfo? Property(Type? type, string name) =>
        type?.GetProperty(name, BindingFlags.Public | BindingFlags.Instance)
            is { CanWrite: true, SetMethod.IsPublic: true } p ? p : null;
}
