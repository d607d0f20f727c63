using Microsoft.ML;
using Microsoft.ML.Peft.BaseModels;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Peft.Modeling;
using Microsoft.ML.Peft.Tests.BaseModels;
using Microsoft.ML.Peft.Tests.Onnx;
using Microsoft.ML.Peft.Training;
using TorchSharp;

namespace Microsoft.ML.Peft.Tests.Stages.LongText;

/// <summary>
/// A small random ONNX base whose vocabulary is one token per word (so a text of n words is n tokens, ids known by
/// hand), and documents whose label is decided by one word near their end only.
/// </summary>
internal static class LongTextKit
{
    /// <summary>The window every long-text test uses: 14 tokens of text besides [CLS] and [SEP].</summary>
    public const int MaxLength = 16;

    /// <summary>Ids 0–4 are the specials; filler word i has id <see cref="FirstFillerId"/> + i.</summary>
    public const int FirstFillerId = 5;

    public static readonly string[] Fillers =
    [
        "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo", "lima",
        "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango", "uniform", "victor", "whiskey",
        "xray", "yankee", "zulu", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
        "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
        "twenty",
    ];

    public static readonly string[] Deciders = ["love", "hate"];

    /// <summary>
    /// A base of 32 hidden units in 2 layers with 64 positions and the vocabulary above, written into
    /// <paramref name="folder"/>.
    /// </summary>
    public static BaseModel TinyBase(string folder)
    {
        var words = Fillers.Concat(Deciders).ToArray();
        var (onnx, vocab) = new TinyOnnx
        {
            Positions = 64, Vocab = FirstFillerId + words.Length, Hidden = 32, Heads = 4, Intermediate = 64,
        }.WriteTo(Path.Combine(folder, "base"));
        File.WriteAllText(vocab, string.Join("\n", new[] { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]" }
            .Concat(words)) + "\n");
        return BaseModel.FromOnnx(onnx, vocab, cacheDirectory: Path.Combine(folder, "cache"));
    }

    /// <summary>The text of filler words <paramref name="from"/> to <paramref name="to"/> (exclusive).</summary>
    public static string Words(int from, int to) => string.Join(" ", Fillers[from..to]);

    /// <summary>
    /// Documents of <paramref name="length"/> random filler words ending in "love love love" (label 1) or "hate hate
    /// hate" (label 0): beyond a 16-token window's reach from the start, so a truncated document carries no sign of
    /// its label. Three words rather than one give the random tiny base a signal it learns in a few epochs. With
    /// <paramref name="pair"/>, a second text of three random fillers goes with each.
    /// </summary>
    public static List<PairRow> EndDecided(int n, int seed, int length = 60, bool pair = false)
    {
        var rng = new Random(seed);
        var rows = new List<PairRow>();
        for (int i = 0; i < n; i++)
        {
            var words = Enumerable.Range(0, length).Select(_ => Fillers[rng.Next(Fillers.Length)]).ToArray();
            int label = rng.Next(2);
            for (int w = length - 3; w < length; w++) words[w] = label == 1 ? "love" : "hate";
            rows.Add(new PairRow
            {
                Label = label, Sentence1 = string.Join(" ", words),
                Sentence2 = pair ? string.Join(" ", Enumerable.Range(0, 3).Select(_ => Fillers[rng.Next(10)])) : "",
            });
        }
        return rows;
    }

    /// <summary>The options every test starts from: float32, TorchSharp, a fixed plan, no validation.</summary>
    public static PeftTextClassificationOptions Options(BaseModel baseModel, LongTextStrategy strategy,
        bool pair = false) => new()
        {
            Sentence1ColumnName = "Sentence1", Sentence2ColumnName = pair ? "Sentence2" : null,
            BaseModel = baseModel, MaxSequenceLength = MaxLength, LongTextStrategy = strategy, Epochs = 4,
            BatchSize = 16, LearningRate = 1e-2, Precision = PeftPrecision.Float32, Pooling = Pooling.Mean,
            ScoringEngine = ScoringEngine.TorchSharp, ValidationFraction = 0,
        };

    /// <summary>Keys the float label and fits a classifier on <paramref name="rows"/>.</summary>
    public static PeftTextTransformer Fit(MLContext ml, IEnumerable<PairRow> rows, PeftTextClassificationOptions o)
    {
        torch.manual_seed(1);
        var data = Keyed(ml, rows);
        return ml.Peft().TextClassification(o).Fit(data);
    }

    /// <summary>The rows with their float label mapped to a key (0 → key 1, 1 → key 2).</summary>
    public static IDataView Keyed(MLContext ml, IEnumerable<PairRow> rows)
    {
        var data = ml.Data.LoadFromEnumerable(rows.ToList());
        return ml.Transforms.Conversion.MapValueToKey("Label",
            keyOrdinality: Transforms.ValueToKeyMappingEstimator.KeyOrdinality.ByValue).Fit(data).Transform(data);
    }

    /// <summary>Share of rows whose predicted class is the label's (classes in key order: 0, then 1).</summary>
    public static double Accuracy(PeftTextTransformer stage, IReadOnlyList<PairRow> rows, MLContext ml)
    {
        var scores = OnnxParityKit.StageScoresOf(stage.Transform(Keyed(ml, rows)));
        return rows.Where((r, i) => (scores[i][1] > scores[i][0] ? 1 : 0) == (int)r.Label).Count()
            / (double)rows.Count;
    }

    /// <summary>The Score column for single texts (no labels needed).</summary>
    public static float[][] Scores(PeftTextTransformer stage, MLContext ml, params string[] texts) =>
        OnnxParityKit.StageScoresOf(stage.Transform(ml.Data.LoadFromEnumerable(
            texts.Select(t => new PairRow { Sentence1 = t, Sentence2 = "" }).ToList())));
}
