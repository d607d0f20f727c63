using System.Globalization;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace Microsoft.ML.Peft.Tests.MLNet;

/// <summary>An input row: label text and a sentence.</summary>
public sealed class TextRow
{
    public string Label { get; set; } = "";

    public string Text { get; set; } = "";
}

/// <summary>What PredictionEngine returns after MapKeyToValue.</summary>
public sealed class TextPrediction
{
    public string PredictedLabel { get; set; } = "";

    public float[] Score { get; set; } = [];
}

/// <summary>Three easily separable topics; deterministic for a seed.</summary>
internal static class MLNetTestData
{
    private static readonly Dictionary<string, string[]> Vocabulary = new()
    {
        ["sport"] = ["football", "goal", "match", "striker", "league", "referee", "tennis", "score"],
        ["weather"] = ["rain", "sunny", "storm", "forecast", "cloudy", "wind", "snow", "temperature"],
        ["food"] = ["pasta", "recipe", "delicious", "bake", "cheese", "soup", "kitchen", "spicy"],
    };

    private static readonly string[] Filler = ["the", "a", "today", "really", "very", "and", "was", "we"];

    public static List<TextRow> Rows(int count, int seed)
    {
        var random = new Random(seed);
        var labels = Vocabulary.Keys.ToArray();
        var rows = new List<TextRow>(count);
        for (int i = 0; i < count; i++)
        {
            string label = labels[random.Next(labels.Length)];
            int words = random.Next(4, 8);
            var text = Enumerable.Range(0, words).Select(_ => random.NextDouble() < 0.7
                ? Vocabulary[label][random.Next(Vocabulary[label].Length)]
                : Filler[random.Next(Filler.Length)]);
            rows.Add(new TextRow { Label = label, Text = string.Join(' ', text) });
        }
        return rows;
    }

    public static IDataView Load(MLContext ml, IEnumerable<TextRow> rows) => ml.Data.LoadFromEnumerable(rows.ToList());

    /// <summary>Writes rows as "Label\tText" lines (the column order of <see cref="TextRow"/>'s schema).</summary>
    public static void WriteTsv(string path, IEnumerable<TextRow> rows)
        => File.WriteAllLines(path, rows.Select(r => $"{r.Label}\t{r.Text}"));

    public static IDataView LoadTsv(MLContext ml, string path) => ml.Data.LoadFromTextFile(path,
        [new TextLoader.Column("Label", DataKind.String, 0), new TextLoader.Column("Text", DataKind.String, 1)],
        separatorChar: '\t', hasHeader: false, allowQuoting: false);

    public static float[][] Scores(IDataView view, string column = "Score")
    {
        var result = new List<float[]>();
        var col = view.Schema[column];
        using var cursor = view.GetRowCursor([col]);
        var getter = cursor.GetGetter<VBuffer<float>>(col);
        VBuffer<float> value = default;
        while (cursor.MoveNext())
        {
            getter(ref value);
            result.Add(value.DenseValues().ToArray());
        }
        return result.ToArray();
    }

    public static string Describe(float[] values) =>
        string.Join(' ', values.Select(v => v.ToString("R", CultureInfo.InvariantCulture)));
}
