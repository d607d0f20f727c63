using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Peft.BaseModels;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Peft.Tests.BaseModels;

namespace Microsoft.ML.Peft.Tests.Stages;

/// <summary>One bad row (invalid UTF-16 text, an infinite label) never takes a batch or a Fit down.</summary>
[TestClass]
public sealed class BadRowTests
{
    private const string LoneHigh = "I really love this \uD83D movie";
    private const string LoneLow = "\uDE00 We hate this book";

    [TestMethod]
    public void LoneSurrogates_AreRepairedInTrainingAndScoring_AndCounted()
    {
        using var temp = new EmbeddedOnnx.TempFolder();
        var ml = new MLContext(1);
        var logs = CaptureLogs(ml);
        var rows = StageTestData.Negation(32, 1);
        rows[3].Text = LoneHigh;
        rows[10].Text = LoneLow;
        var data = ml.Data.LoadFromEnumerable(rows);
        var model = ml.Transforms.Conversion.MapValueToKey("Label").Append(ml.Peft().TextClassification(
            Options<PeftTextClassificationOptions>(temp.Path))).Fit(data);

        Assert.IsTrue(logs.Any(l => l.Contains("Repaired 2 training row(s) whose text held invalid UTF-16")),
            string.Join("\n", logs.Where(l => l.Contains("row"))));

        // Scoring: the bad rows get scores, equal to those of the same text with U+FFFD where the surrogate was.
        var scoring = new List<TextRow> { new() { Label = "positive", Text = LoneHigh },
            new() { Label = "negative", Text = LoneLow },
            new() { Label = "positive", Text = "I really love this \uFFFD movie" },
            new() { Label = "negative", Text = "\uFFFD We hate this book" } };
        var scores = ml.Data.CreateEnumerable<ScoreOut>(model.Transform(ml.Data.LoadFromEnumerable(scoring)), false)
            .ToList();
        Assert.HasCount(4, scores);
        Assert.IsTrue(scores.All(s => s.Score.Length == 2 && s.Score.All(float.IsFinite)));
        CollectionAssert.AreEqual(scores[2].Score, scores[0].Score);
        CollectionAssert.AreEqual(scores[3].Score, scores[1].Score);
    }

    [TestMethod]
    public void NonFiniteRegressionLabels_AreSkippedAndCounted()
    {
        using var temp = new EmbeddedOnnx.TempFolder();
        var ml = new MLContext(1);
        var logs = CaptureLogs(ml);
        var rows = StageTestData.Negation(32, 1)
            .Select(r => new RegressionAndPairTests.ScoreRow { Label = r.Label == "positive" ? 4 : 1, Text = r.Text! })
            .ToList();
        rows[0].Label = float.PositiveInfinity;
        rows[1].Label = float.NegativeInfinity;
        rows[2].Label = float.NaN;
        var options = Options<PeftTextRegressionOptions>(temp.Path);
        options.LabelColumnName = "Label";
        var model = ml.Peft().TextRegression(options).Fit(ml.Data.LoadFromEnumerable(rows));

        Assert.AreEqual(3, model.TrainingReport!.SkippedRows);
        Assert.IsTrue(logs.Any(l => l.Contains("Skipped 2 training row(s) with an infinite label in column 'Label'")),
            string.Join("\n", logs.Where(l => l.Contains("kipped"))));
        Assert.IsTrue(logs.Any(l => l.Contains("Skipped 1 training row(s) with a missing label in column 'Label'")));
        var scores = model.Transform(ml.Data.LoadFromEnumerable(rows)).GetColumn<float>("Score").ToList();
        Assert.IsTrue(scores.All(float.IsFinite));
    }

    private static T Options<T>(string folder) where T : PeftTextOptions, new()
    {
        var (onnx, vocab) = new TinyOnnx().WriteTo(Path.Combine(folder, "base"));
        return new T
        {
            Sentence1ColumnName = "Text", Epochs = 1, BatchSize = 16, MaxSequenceLength = 16,
            BaseModel = BaseModel.FromOnnx(onnx, vocab, cacheDirectory: Path.Combine(folder, "cache")),
        };
    }

    private static List<string> CaptureLogs(MLContext ml)
    {
        var logs = new List<string>();
        // ml.Log is ambiguous at compile time against the publicized ML.NET references.
        typeof(MLContext).GetEvent("Log")!.AddEventHandler(ml, new EventHandler<LoggingEventArgs>((_, e) =>
        {
            lock (logs) logs.Add(e.Message);
        }));
        return logs;
    }

    private sealed class ScoreOut
    {
        public float[] Score { get; set; } = [];
    }
}
