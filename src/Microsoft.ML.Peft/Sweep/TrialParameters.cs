using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.ML.Peft.Methods;
using Microsoft.ML.Peft.MLNet;

namespace Microsoft.ML.Peft.Sweep;

/// <summary>
/// One point of a search space: a method name and a value per parameter. Serialises to and from JSON.
/// </summary>
public sealed class TrialParameters
{
    /// <summary>Creates a point.</summary>
    /// <param name="method">A method name (see <see cref="PeftMethodConfig.KnownMethods"/>).</param>
    /// <param name="values">Parameter values by option name (string, bool, int, long or double).</param>
    public TrialParameters(string method, IReadOnlyDictionary<string, object> values)
    {
        Method = method ?? throw new ArgumentNullException(nameof(method));
        Values = new SortedDictionary<string, object>(values.ToDictionary(kv => kv.Key, kv => kv.Value),
            StringComparer.Ordinal);
    }

    /// <summary>The PEFT method.</summary>
    public string Method { get; }

    /// <summary>Parameter values by option name, sorted by name.</summary>
    public IReadOnlyDictionary<string, object> Values { get; }

    /// <summary>Compact JSON: <c>{"method":"lora","parameters":{"Epochs":1,"Rank":8}}</c>.</summary>
    public string ToJson()
    {
        var parameters = new JsonObject();
        foreach (var (k, v) in Values) parameters[k] = JsonValue.Create(v);
        return new JsonObject { ["method"] = Method, ["parameters"] = parameters }.ToJsonString();
    }

    /// <summary>Reads <see cref="ToJson"/>'s output.</summary>
    public static TrialParameters FromJson(string json)
    {
        var node = JsonNode.Parse(json)!.AsObject();
        var values = new Dictionary<string, object>();
        foreach (var (k, v) in node["parameters"]!.AsObject())
        {
            var e = v!.GetValue<JsonElement>();
            values[k] = e.ValueKind switch
            {
                JsonValueKind.String => e.GetString()!,
                JsonValueKind.True => true,
                JsonValueKind.False => false,
                JsonValueKind.Number when e.TryGetInt64(out long l) && !e.GetRawText().Contains('.')
                    && !e.GetRawText().Contains('E', StringComparison.OrdinalIgnoreCase)
                    => l is >= int.MinValue and <= int.MaxValue ? (int)l : l,
                JsonValueKind.Number => e.GetDouble(),
                _ => throw new FormatException($"Parameter '{k}' has an unsupported JSON value."),
            };
        }
        return new TrialParameters((string)node["method"]!, values);
    }

    /// <inheritdoc/>
    public override string ToString() => ToJson();

    /// <summary>The method config with this point's method parameters set.</summary>
    public PeftMethodConfig CreateMethodConfig()
    {
        var config = PeftMethodConfig.FromJson($"{{\"method\":{JsonSerializer.Serialize(Method)},\"options\":{{}}}}");
        foreach (var (k, v) in Values)
            if (PeftSearchSpace.Property(config.GetType(), k) is { } p)
                p.SetValue(config, ConvertTo(v, p.PropertyType));
        return config;
    }

    /// <summary>
    /// Sets <see cref="PeftTextOptions.Method"/> and every shared parameter on <paramref name="options"/>.
    /// </summary>
    public void ApplyTo(PeftTextOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var config = CreateMethodConfig();
        options.Method = config;
        foreach (var (k, v) in Values)
        {
            if (PeftSearchSpace.Property(config.GetType(), k) is not null) continue;
            var p = PeftSearchSpace.Property(options.GetType(), k)
                ?? throw new ArgumentException(
                    $"Parameter '{k}' is neither an option of method '{Method}' nor of the stage.");
            p.SetValue(options, ConvertTo(v, p.PropertyType));
        }
    }

    private static object ConvertTo(object value, Type type)
    {
        type = Nullable.GetUnderlyingType(type) ?? type;
        if (type == typeof(string[]))
            return value is string s
                ? s.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
                : (string[])value;
        if (type.IsEnum)
            return Enum.Parse(type, Convert.ToString(value, CultureInfo.InvariantCulture)!, ignoreCase: true);
        if (type == typeof(int) && value is double d) return (int)Math.Round(d);
        return Convert.ChangeType(value, type, CultureInfo.InvariantCulture);
    }
}
