using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace Microsoft.ML.Peft.MLNet;

/// <summary>
/// Short per-field fingerprints of a stage's options JSON. The header's SHA-256 says that it changed; these say which
/// field changed, so a damaged or edited header is reported by field name even when the new value is itself valid
/// (an alpha of 36 instead of 16 passes every rule, yet scores differently).
/// </summary>
internal static class PeftHeaderFields
{
    /// <summary>Bytes kept of each field's SHA-256: enough to tell a changed field, small enough for many
    /// fields.</summary>
    internal const int FingerprintBytes = 8;

    /// <summary>
    /// Fingerprints of every leaf field of <paramref name="json"/>, by dotted path. String values that hold a JSON
    /// object (the method and encoder configurations are stored that way) are opened, so their fields are named too.
    /// </summary>
    /// <exception cref="JsonException"><paramref name="json"/> does not parse.</exception>
    internal static SortedDictionary<string, byte[]> Fingerprint(string json)
    {
        var result = new SortedDictionary<string, byte[]>(StringComparer.Ordinal);
        using var document = JsonDocument.Parse(json);
        Add(result, "", document.RootElement);
        return result;
    }

    /// <summary>The fields whose fingerprints differ, are missing or are new, in order; empty when none do.</summary>
    internal static List<string> Changed(IReadOnlyDictionary<string, byte[]> saved,
        IReadOnlyDictionary<string, byte[]> now)
    {
        var names = new SortedSet<string>(saved.Keys, StringComparer.Ordinal);
        names.UnionWith(now.Keys);
        return names.Where(n => !saved.TryGetValue(n, out var a) || !now.TryGetValue(n, out var b)
                                || !a.AsSpan().SequenceEqual(b)).ToList();
    }

    private static void Add(SortedDictionary<string, byte[]> result, string path, JsonElement element)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                foreach (var property in element.EnumerateObject())
                    Add(result, path.Length == 0 ? property.Name : path + "." + property.Name, property.Value);
                return;
            case JsonValueKind.String when TryParseObject(element.GetString()!, out var nested):
                using (nested)
                    Add(result, path, nested!.RootElement);
                return;
            default:
                // Duplicate paths (a garbled key that collides with another) keep the first: the table then differs.
                result.TryAdd(path, Hash(element.GetRawText()));
                return;
        }
    }

    private static bool TryParseObject(string text, out JsonDocument? document)
    {
        document = null;
        if (!text.StartsWith('{'))
            return false;
        try
        {
            document = JsonDocument.Parse(text);
            return true;
        }
        catch (JsonException)
        {
            return false;
        }
    }

    private static byte[] Hash(string text) => SHA256.HashData(Encoding.UTF8.GetBytes(text))[..FingerprintBytes];
}
