namespace Microsoft.ML.Peft.Tokenization;

/// <summary>
/// Replaces lone UTF-16 surrogates with U+FFFD, as Hugging Face's tokenizers and .NET's own UTF-8 encoder do. The
/// tokenizer's Unicode normaliser rejects them with an exception, and one such row (text cut mid-character, a bad
/// export) must not fail a whole batch or a whole Fit.
/// </summary>
internal static class Utf16Repair
{
    /// <summary>The replacement character written for each lone surrogate.</summary>
    internal const char Replacement = '\uFFFD';

    /// <summary><paramref name="text"/> with lone surrogates replaced; the same instance when there are none.</summary>
    internal static string Repair(string text)
    {
        int first = FirstLoneSurrogate(text);
        if (first < 0)
            return text;
        var chars = text.ToCharArray();
        for (int i = first; i < chars.Length; i++)
        {
            if (char.IsHighSurrogate(chars[i]) && i + 1 < chars.Length && char.IsLowSurrogate(chars[i + 1]))
                i++;
            else if (char.IsSurrogate(chars[i]))
                chars[i] = Replacement;
        }
        return new string(chars);
    }

    /// <summary>Whether <paramref name="text"/> holds a lone surrogate.</summary>
    internal static bool NeedsRepair(ReadOnlySpan<char> text) => FirstLoneSurrogate(text) >= 0;

    private static int FirstLoneSurrogate(ReadOnlySpan<char> text)
    {
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (!char.IsSurrogate(c))
                continue;
            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                i++;
                continue;
            }
            return i;
        }
        return -1;
    }
}
