using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.ML.Peft.MLNet;

namespace Microsoft.ML.Peft.HuggingFace;

/// <summary>
/// An <c>adapter_config.json</c> being read: typed look-ups whose errors name the file and the key, and the
/// <c>target_modules</c> forms <c>peft</c> accepts (a list of names, or one regular expression string).
/// </summary>
internal sealed class AdapterConfigJson(JsonObject node, string file)
{
    /// <summary>The file, for messages.</summary>
    public string File => file;

    /// <summary>The parsed object.</summary>
    public JsonObject Node => node;

    /// <summary>Reads and parses <paramref name="path"/>.</summary>
    public static AdapterConfigJson Load(string path)
    {
        try
        {
            var node = JsonNode.Parse(System.IO.File.ReadAllText(path)) as JsonObject
                ?? throw new PeftModelFormatException($"{path}: the file is not a JSON object.");
            return new AdapterConfigJson(node, path);
        }
        catch (JsonException e)
        {
            throw new PeftModelFormatException($"{path}: the file is not valid JSON ({e.Message}).", e);
        }
    }

    public PeftModelFormatException Error(string key, string message) => new($"{file}: key '{key}' {message}");

    public bool Has(string key) => node[key] is not null;

    public string? String(string key) => Get(key, n => n.GetValue<string>(), "a string");

    public int Int(string key, int fallback) => Get(key, n => n.GetValue<int>(), "an integer") ?? fallback;

    public double Double(string key, double fallback) =>
        Get(key, n => n.GetValue<double>(), "a number") ?? fallback;

    public bool Bool(string key, bool fallback) => Get(key, n => n.GetValue<bool>(), "true or false") ?? fallback;

    /// <summary>
    /// A list of module names, or (as <c>peft</c>'s <c>check_target_module_exists</c>, peft/tuners/tuners_utils.py) one
    /// string: a regular expression matched against the whole module name, except the <c>all-linear</c> shorthand.
    /// </summary>
    public (string[] Names, string? Pattern) Modules(string key)
    {
        var value = node[key];
        if (value is null) return ([], null);
        if (value is JsonValue v && v.TryGetValue<string>(out var s))
            return s == Methods.Lora.LowRankConfigBase.AllLinear ? ([s], null) : ([], s);
        if (value is JsonArray a && a.All(x => x is JsonValue xv && xv.TryGetValue<string>(out _)))
            return (a.Select(x => x!.GetValue<string>()).ToArray(), null);
        throw Error(key, "must be a list of module names or a regular expression string.");
    }

    private T? Get<T>(string key, Func<JsonNode, T> read, string what) where T : struct =>
        node[key] is { } n ? TryRead(key, n, read, what) : null;

    private string? Get(string key, Func<JsonNode, string> read, string what) =>
        node[key] is { } n ? TryRead(key, n, read, what) : null;

    private T TryRead<T>(string key, JsonNode n, Func<JsonNode, T> read, string what)
    {
        try { return read(n); }
        catch (Exception e) when (e is InvalidOperationException or FormatException)
        {
            throw Error(key, $"must be {what}, got {n.ToJsonString()}.");
        }
    }
}
