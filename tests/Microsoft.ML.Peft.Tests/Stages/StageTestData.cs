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
    private static readonly string[] Adverbs =
        ["really", "truly", "honestly", "actually", "genuinely", "simply", "certainly"];
    private static readonly string[] Objects =
        ["movie", "book", "phone", "hotel", "meal", "game", "song", "car", "laptop", "show"];
    private static readonly string[] Subjects = ["I", "We", "They", "My friends", "Most people"];

    /// <summary>
    /// Sentiment = (positive verb) XOR (negated): "I do not really love this movie" is negative. A filler adverb sits
    /// between "not" and the verb, so no word or word pair gives the label away: a bag-of-words model cannot represent
    /// the XOR.
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
            string text = $"{subject} do {(negated ? "not " : "")}{Adverbs[rng.Next(Adverbs.Length)]} {verb} this " +
                $"{Objects[rng.Next(Objects.Length)]}";
            rows.Add(new TextRow { Label = positiveVerb ^ negated ? "positive" : "negative", Text = text });
        }
        return rows;
    }

    // Six topics, ten words each: the first six words are for training, the last four only for testing.
    private static readonly (string Name, string[] Words)[] Topics =
    [
        ("food", ["pizza", "pasta", "salad", "soup", "burger", "sandwich",
            "sushi", "noodles", "steak", "pancakes"]),
        ("tech", ["laptop", "smartphone", "keyboard", "monitor", "printer", "router",
            "tablet", "processor", "software", "webcam"]),
        ("travel", ["airport", "passport", "luggage", "hotel", "cruise", "flight",
            "suitcase", "airline", "hostel", "itinerary"]),
        ("sport", ["football", "tennis", "basketball", "soccer", "golf", "hockey",
            "baseball", "volleyball", "cricket", "rugby"]),
        ("music", ["guitar", "piano", "violin", "drums", "concert", "singer",
            "orchestra", "trumpet", "album", "melody"]),
        ("weather", ["rain", "snow", "storm", "thunder", "wind", "fog", "hurricane", "drizzle", "blizzard", "tornado"]),
    ];
    private static readonly string[] Templates =
    [
        "{0} kept talking about the {1} all day", "I read an article about the {1} yesterday",
        "{0} asked me about the {1} again", "Nobody expected the {1} to be like that",
        "Tell me more about the {1} please", "{0} could not stop thinking about the {1}",
    ];

    /// <summary>
    /// Six balanced topic classes, written with the topic's training words (<paramref name="unseenWords"/> false) or
    /// with four other words of each topic that training never shows (true). The templates are shared by every class,
    /// so a bag-of-words model trained on the first kind has nothing to go on in the second; a pretrained encoder knows
    /// that a hurricane is weather. The majority class is 1/6.
    /// </summary>
    public static List<TextRow> SixTopics(int n, int seed, bool unseenWords)
    {
        var rng = new Random(seed);
        var rows = new List<TextRow>();
        for (int i = 0; i < n; i++)
        {
            var (name, words) = Topics[i % Topics.Length];
            string word = unseenWords ? words[6 + rng.Next(4)] : words[rng.Next(6)];
            string template = Templates[rng.Next(Templates.Length)];
            string text = string.Format(template, Subjects[rng.Next(Subjects.Length)], word);
            rows.Add(new TextRow { Label = name, Text = text });
        }
        return rows;
    }

    private static readonly (string Name, string Template)[] Intents =
    [
        ("ask", "Can you tell me where to find the {0}"), ("praise", "I absolutely love the {0} here"),
        ("complain", "I am fed up with the broken {0}"), ("buy", "I want to order a new {0} today"),
    ];

    /// <summary>
    /// Twenty-four balanced classes: an intent (ask, praise, complain, buy; each with its own sentence) crossed with
    /// the six topics of <see cref="SixTopics"/>, written with the training words or with the unseen ones. Bag-of-words
    /// gets the intent from the sentence but the topic of an unseen word only by chance; the majority class is 1/24.
    /// </summary>
    public static List<TextRow> TwentyFourClasses(int n, int seed, bool unseenWords)
    {
        var rng = new Random(seed);
        var rows = new List<TextRow>();
        for (int i = 0; i < n; i++)
        {
            var (topic, words) = Topics[i % Topics.Length];
            var (intent, template) = Intents[i / Topics.Length % Intents.Length];
            string word = unseenWords ? words[6 + rng.Next(4)] : words[rng.Next(6)];
            rows.Add(new TextRow { Label = $"{intent}-{topic}", Text = string.Format(template, word) });
        }
        return rows;
    }

    public static IDataView Load(MLContext ml, IEnumerable<TextRow> rows) => ml.Data.LoadFromEnumerable(rows);
}
