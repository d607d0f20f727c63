using Microsoft.ML.Peft.Tokenization;

namespace Microsoft.ML.Peft.Training;

/// <summary>Turns raw texts into <see cref="Example"/>s with one tokenizer call per row.</summary>
internal static class Encoding
{
    public static Example Encode(TextTokenizer tokenizer, string? first, string? second, bool pair, int maxLength, float label)
    {
        var t = pair ? tokenizer.EncodePair(first, second, maxLength) : tokenizer.EncodeSingle(first, maxLength);
        var ids = new long[t.InputIds.Length];
        var types = new long[t.TokenTypeIds.Length];
        for (int i = 0; i < ids.Length; i++) { ids[i] = t.InputIds[i]; types[i] = t.TokenTypeIds[i]; }
        return new Example(ids, types, label);
    }

    /// <summary>Encodes many rows on all cores; order is preserved.</summary>
    public static Example[] EncodeAll(TextTokenizer tokenizer, IReadOnlyList<string?> first, IReadOnlyList<string?>? second, IReadOnlyList<float>? labels, int maxLength)
    {
        var result = new Example[first.Count];
        Parallel.For(0, first.Count, i =>
            result[i] = Encode(tokenizer, first[i], second?[i], second is not null, maxLength, labels?[i] ?? 0f));
        return result;
    }
}
