using Microsoft.ML;
using Microsoft.ML.Data;

namespace Microsoft.ML.Peft.Tests.Stages;

public sealed class TextRow
{
    public string Label { get; set; } = "";
    public string? Text { get; set; }
}

public sealed class PairRow
{
    public float Label { get; set; }
    public string Sentence1 { get; set; } = "";
    public string Sentence2 { get; set; } = "";
}

/// <summary>Data the tests make themselves.</summary>
internal static class StageTestData
{
    private static readonly string[] Positive = ["love", "like", "enjoy", "adore", "recommend", "admire", "treasure"];
    private static readonly string[] Negative = ["hate", "dislike", "regret", "despise", "resent", "loathe", "detest"];
    private static readonly string[] Adverbs = ["really", "truly", "honestly", "actually", "genuinely", "simply", "certainly"];
    private static readonly string[] Objects = ["movie", "book", "phone", "hotel", "meal", "game", "song", "car", "laptop", "show"];
    private static readonly string[] Subjects = ["I", "We", "They", "My friends", "Most people"];

    /// <summary>
    /// Sentiment = (positive verb) XOR (negated): "I do not really love this movie" is negative. A filler adverb sits between
    /// "not" and the verb, so no word or word pair gives the label away: a bag-of-words model cannot represent the XOR.
    /// </summary>
    public static List<TextRow> Negation(int n, int seed)
    {
        var rng = new Random(seed);
        var rows = new List<TextRow>();
        for (int i = 0; i < n; i++)
        {
            bool positiveVerb = rng.Next(2) == 0, negated = rng.Next(2) == 0;
            string verb = positiveVerb ? Positive[rng.Next(Positive.Length)] : Negative[rng.Next(Negative.Length)];
            string subject = Subjects[rng.Next(Subjects.Length)];
            string text = $"{subject} do {(negated ? "not " : "")}{Adverbs[rng.Next(Adverbs.Length)]} {verb} this {Objects[rng.Next(Objects.Length)]}";
            rows.Add(new TextRow { Label = positiveVerb ^ negated ? "positive" : "negative", Text = text });
        }
        return rows;
    }

    public static IDataView Load(MLContext ml, IEnumerable<TextRow> rows) => ml.Data.LoadFromEnumerable(rows);
}
