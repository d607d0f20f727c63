using Microsoft.ML;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Peft.Testing;

namespace Microsoft.ML.Peft.Tests.Stages;

[TestClass]
public sealed class RegressionAndPairTests
{
    public sealed class ScoreRow
    {
        public float Label { get; set; }
        public string Text { get; set; } = "";
    }

    private static List<ScoreRow> Scores(int n, int seed) =>
        StageTestData.Negation(n, seed)
            .Select(r => new ScoreRow { Label = r.Label == "positive" ? 4.5f : 0.5f, Text = r.Text! }).ToList();

    [TestMethod]
    public void RegressionLearnsAndWorksWithRegressionEvaluate()
    {
        var ml = new MLContext(1);
        var train = ml.Data.LoadFromEnumerable(Scores(320, 1));
        var test = ml.Data.LoadFromEnumerable(Scores(120, 2));
        var model = ml.Peft().TextRegression(new PeftTextRegressionOptions
        {
            LabelColumnName = "Label", Sentence1ColumnName = "Text", Epochs = 4, BatchSize = 16, LearningRate = 2e-3,
            MaxSequenceLength = 32,
        }).Fit(train);
        var metrics = ml.Regression.Evaluate(model.Transform(test));
        var baseline = ml.Transforms.Text.FeaturizeText("Features", "Text").Append(ml.Regression.Trainers.Sdca())
            .Fit(train);
        var baselineMetrics = ml.Regression.Evaluate(baseline.Transform(test));
        Console.WriteLine($"LoRA regression RMSE {metrics.RootMeanSquaredError:F3}, R² {metrics.RSquared:F3}; SDCA " +
            $"RMSE {baselineMetrics.RootMeanSquaredError:F3}");
        Assert.IsLessThan(1.0, metrics.RootMeanSquaredError);
        Assert.IsLessThan(baselineMetrics.RootMeanSquaredError, metrics.RootMeanSquaredError);

        string path = Path.Combine(Path.GetTempPath(), $"peft-reg-{Guid.NewGuid():N}.zip");
        try
        {
            PeftModelIO.SaveAtomic(ml, model, train.Schema, path);
            var loaded = new MLContext(3).Model.Load(path, out _);
            CollectionAssert.AreEqual(RowFormatter.Format(model.Transform(test), ["Score"]),
                RowFormatter.Format(loaded.Transform(test), ["Score"]));
        }
        finally { File.Delete(path); }
    }

    [TestMethod]
    public void SentencePairsTrainScoreAndRoundTrip()
    {
        // Label: do both sentences talk about the same thing? Only a model that sees both sentences can tell.
        var ml = new MLContext(1);
        List<PairRow> Pairs(int n, int seed)
        {
            var a = StageTestData.Negation(n, seed);
            var b = StageTestData.Negation(n, seed + 100);
            var rng = new Random(seed);
            return a.Zip(b, (x, y) =>
            {
                bool same = rng.Next(2) == 0;
                string topic = x.Text!.Split(' ')[^1];
                string second = same ? string.Join(' ', y.Text!.Split(' ')[..^1].Append(topic)) : y.Text!;
                return new PairRow { Label = second.Split(' ')[^1] == topic ? 1 : 0, Sentence1 = x.Text!,
                    Sentence2 = second };
            }).ToList();
        }
        var train = ml.Data.LoadFromEnumerable(Pairs(320, 1));
        var test = ml.Data.LoadFromEnumerable(Pairs(120, 2));
        var model = ml.Transforms.Conversion.MapValueToKey("Label")
            .Append(ml.Peft().TextClassification(new PeftTextClassificationOptions
            {
                Sentence1ColumnName = "Sentence1", Sentence2ColumnName = "Sentence2", Epochs = 3, BatchSize = 16,
                LearningRate = 2e-3, MaxSequenceLength = 40,
            }))
            .Fit(train);
        var metrics = ml.MulticlassClassification.Evaluate(model.Transform(test));
        Console.WriteLine($"pair accuracy {metrics.MicroAccuracy:F3}");
        Assert.IsGreaterThan(0.7, metrics.MicroAccuracy);

        string path = Path.Combine(Path.GetTempPath(), $"peft-pair-{Guid.NewGuid():N}.zip");
        try
        {
            PeftModelIO.SaveAtomic(ml, model, train.Schema, path);
            var loaded = new MLContext(3).Model.Load(path, out _);
            CollectionAssert.AreEqual(RowFormatter.Format(model.Transform(test), ["Score"]),
                RowFormatter.Format(loaded.Transform(test), ["Score"]));
        }
        finally { File.Delete(path); }
    }
}
