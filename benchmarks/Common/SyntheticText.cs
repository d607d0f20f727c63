// Generated English text for the benchmarks (linked into each benchmark project, not a library): varied sentences from
// fixed word lists and a seeded Random, so every run sees the same texts, and helpers that cut them to a token count.

using System.Text;
using Microsoft.ML.Peft.Tokenization;

namespace Microsoft.ML.Peft.Benchmarks;

internal static class SyntheticText
{
    private static readonly string[] Subjects =
    [
        "the committee", "my neighbour", "a young engineer", "the old library", "our startup", "the orchestra",
        "every student", "the city council", "a curious cat", "the research team", "the airline", "her grandmother",
        "the quarterly report", "this new phone", "the hospital", "a small bakery", "the football club", "the museum",
    ];

    private static readonly string[] Verbs =
    [
        "announced", "rejected", "quietly improved", "could not explain", "celebrated", "postponed", "reviewed",
        "misunderstood", "carefully documented", "ignored", "was surprised by", "recommended", "repaired", "questioned",
    ];

    /// <summary>Verbs of <see cref="Verbs"/> with a favourable sense: what <see cref="LabelOf"/> calls
    /// "positive".</summary>
    private static readonly HashSet<string> PositiveVerbs =
        ["announced", "quietly improved", "celebrated", "reviewed", "carefully documented", "recommended", "repaired"];

    private static readonly string[] Objects =
    [
        "the budget for next year", "an unexpected delay in shipping", "the results of the experiment",
        "a controversial proposal", "the broken heating system", "customer complaints about the menu",
        "the schedule for the spring festival", "a faster way to sort invoices", "the rainfall measurements",
        "the lyrics of an old folk song", "several thousand emails", "the privacy policy", "the bridge renovation",
    ];

    private static readonly string[] Tails =
    [
        "after a long meeting on Tuesday", "despite the heavy rain", "because nobody had checked the numbers",
        "which annoyed almost everyone", "while the cameras were rolling", "before the deadline of March 3rd",
        "with remarkable patience", "in front of 250 visitors", "although the evidence was weak",
        "for the second time this month", "according to a spokesperson", "without any explanation",
    ];

    /// <summary>One sentence (10+ words, every word at least one token).</summary>
    public static string Sentence(Random random)
    {
        string s = $"{Pick(random, Subjects)} {Pick(random, Verbs)} {Pick(random, Objects)} {Pick(random, Tails)}";
        return char.ToUpperInvariant(s[0]) + s[1..] +
               random.Next(6) switch { 0 => "!", 1 => "?", 2 => $", scoring {random.Next(1, 100)}%.", _ => "." };
    }

    /// <summary>Varied English sentences, long enough that the text has more than <paramref name="seq"/>
    /// tokens.</summary>
    public static string Paragraph(Random random, int seq)
    {
        var text = new StringBuilder();
        // Each sentence is 10+ words and every word at least one token, so seq/4 sentences overshoot seq tokens.
        int sentences = seq / 4 + 2;
        for (int i = 0; i < sentences; i++) text.Append(Sentence(random)).Append(' ');
        return text.ToString();
    }

    /// <summary>
    /// The shortest word-prefix of a generated paragraph whose encoding ([CLS] text [SEP]) has at least
    /// <paramref name="tokens"/> tokens; with truncation to <paramref name="tokens"/> every such row is exactly that
    /// long, and the tokenizer does not spend time on text that truncation then drops (at most one word's worth).
    /// </summary>
    public static string OfTokens(TextTokenizer tokenizer, Random random, int tokens)
    {
        var words = Paragraph(random, tokens).Split(' ', StringSplitOptions.RemoveEmptyEntries);
        int Count(int w) => tokenizer.EncodeWithoutSpecialTokens(string.Join(' ', words, 0, w)).Count
            + tokenizer.SpecialTokenCountSingle;
        if (Count(words.Length) < tokens) throw new InvalidOperationException("A generated paragraph has fewer than " +
            $"{tokens} tokens.");
        // Token counts of word prefixes never decrease as words are added: binary search for the first prefix that is
        // long enough.
        int lo = 1, hi = words.Length;
        while (lo < hi)
        {
            int mid = (lo + hi) / 2;
            if (Count(mid) >= tokens) hi = mid; else lo = mid + 1;
        }
        return string.Join(' ', words, 0, lo);
    }

    /// <summary>A label for a generated text: "positive" when its first sentence's verb is favourable, else
    /// "negative".</summary>
    public static string LabelOf(string text)
    {
        string? first = null;
        int at = int.MaxValue;
        foreach (var verb in Verbs)
        {
            int i = text.IndexOf(' ' + verb + ' ', StringComparison.Ordinal);
            if (i >= 0 && i < at) (first, at) = (verb, i);
        }
        return first is not null && PositiveVerbs.Contains(first) ? "positive" : "negative";
    }

    private static string Pick(Random random, string[] items) => items[random.Next(items.Length)];
}
