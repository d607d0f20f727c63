using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Peft.BaseModels;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Peft.Testing;
using Microsoft.ML.Peft.Tests.BaseModels;
using Microsoft.ML.Peft.Tests.Sweep;

namespace Microsoft.ML.Peft.Tests.Stages;

/// <summary>PeftEnsembleTransformer: a weighted average of stages that behaves as one stage in ML.NET.</summary>
[TestClass]
public sealed class EnsembleTransformerTests
{
    public sealed class ScoreOutput
    {
        public float[] Score { get; set; } = [];
        public string PredictedLabel { get; set; } = "";
    }

    private static PeftTextTransformer Stage(MLContext ml, IDataView keyed, BaseModel baseModel, double learningRate) =>
        ml.Peft().TextClassification(new PeftTextClassificationOptions
        {
            LabelColumnName = "Label", Sentence1ColumnName = "Text", BaseModel = baseModel,
            Epochs = 1, BatchSize = 16, MaxSequenceLength = 16, LearningRate = learningRate,
        }).Fit(keyed);

    private static float[][] Scores(IDataView scored) => scored.GetColumn<float[]>("Score").ToArray();

    [TestMethod]
    public void ScoresAreTheWeightedAverageAndTheEnsembleWorksAsAStage()
    {
        using var temp = new EmbeddedOnnx.TempFolder();
        var (ml, train, validation, baseModel) = SweepEndToEndTests.Setup(temp);
        var keys = ml.Transforms.Conversion.MapValueToKey("Label").Fit(train);
        var keyed = keys.Transform(train);
        var a = Stage(ml, keyed, baseModel, 1e-2);
        var b = Stage(ml, keyed, baseModel, 3e-2);
        var test = keys.Transform(validation);
        var sa = Scores(a.Transform(test));
        var sb = Scores(b.Transform(test));

        using var ensemble = ml.Peft().Ensemble([a, b], [1, 3]);
        CollectionAssert.AreEqual(new[] { 0.25, 0.75 }, ensemble.Weights.ToArray());
        Assert.AreEqual(a.TrainableParameterCount + b.TrainableParameterCount, ensemble.TrainableParameterCount);
        var scored = ensemble.Transform(test);
        var se = Scores(scored);
        var predicted = scored.GetColumn<uint>("PredictedLabel").ToArray();
        Assert.AreEqual(24, se.Length);
        bool differs = false;
        for (int i = 0; i < se.Length; i++)
        {
            for (int c = 0; c < 2; c++)
            {
                Assert.AreEqual(0.25 * sa[i][c] + 0.75 * sb[i][c], se[i][c], 1e-6, $"row {i} class {c}");
                differs |= Math.Abs(sa[i][c] - sb[i][c]) > 1e-4;
            }
            Assert.AreEqual(se[i][1] > se[i][0] ? 2u : 1u, predicted[i], $"row {i}");
        }
        Assert.IsTrue(differs, "the two members score differently, so the average is not trivially either");

        // Evaluate, MapKeyToValue and PredictionEngine work as on a single stage.
        var metrics = ml.MulticlassClassification.Evaluate(scored);
        double accuracy = predicted.Zip(test.GetColumn<uint>("Label"), (p, y) => p == y ? 1.0 : 0).Average();
        Assert.AreEqual(accuracy, metrics.MicroAccuracy, 1e-9);
        var toValue = ml.Transforms.Conversion.MapKeyToValue("PredictedLabel").Fit(scored);
        var model = new TransformerChain<ITransformer>(keys, ensemble, toValue);
        var labels = model.Transform(validation).GetColumn<string>("PredictedLabel").ToArray();
        CollectionAssert.IsSubsetOf(labels.Distinct().ToArray(), new[] { "positive", "negative" });
        var engine = ml.Model.CreatePredictionEngine<TextRow, ScoreOutput>(model);
        var first = validation.GetColumn<string>("Text").First();
        var one = engine.Predict(new TextRow { Label = "positive", Text = first });
        CollectionAssert.AreEqual(se[0], one.Score);
        Assert.AreEqual(labels[0], one.PredictedLabel);

        // Saved as one ML.NET zip with the members nested; it loads in a fresh context and scores the same.
        string zip = Path.Combine(temp.Path, "ensemble.zip");
        ml.Model.Save(model, train.Schema, zip);
        var loaded = new MLContext(7).Model.Load(zip, out _);
        CollectionAssert.AreEqual(RowFormatter.Format(model.Transform(validation), ["Score", "PredictedLabel"]),
                                  RowFormatter.Format(loaded.Transform(validation), ["Score", "PredictedLabel"]));
        var loadedEnsemble = ((TransformerChain<ITransformer>)loaded).OfType<PeftEnsembleTransformer>().Single();
        CollectionAssert.AreEqual(new[] { 0.25, 0.75 }, loadedEnsemble.Weights.ToArray());
        Assert.AreEqual(2, loadedEnsemble.Members.Count);
        loadedEnsemble.Dispose();
    }

    [TestMethod]
    public void MembersThatDoNotFitAreRefusedWithTheReason()
    {
        using var temp = new EmbeddedOnnx.TempFolder();
        var (ml, train, _, baseModel) = SweepEndToEndTests.Setup(temp);
        var keyed = ml.Transforms.Conversion.MapValueToKey("Label").Fit(train).Transform(train);
        using var a = Stage(ml, keyed, baseModel, 1e-2);
        var numeric = ml.Data.LoadFromEnumerable(StageTestData.Negation(32, 3)
            .Select(r => new ScoreRow { Label = r.Label == "positive" ? 1 : 0, Text = r.Text! }));
        using var regression = ml.Peft().TextRegression(new PeftTextRegressionOptions
        {
            LabelColumnName = "Label", Sentence1ColumnName = "Text", BaseModel = baseModel, Epochs = 1, BatchSize = 16,
            MaxSequenceLength = 16,
        }).Fit(numeric);

        var task = Assert.ThrowsExactly<ArgumentException>(() => ml.Peft().Ensemble([a, regression]));
        StringAssert.Contains(task.Message, "task is Regression");
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentException>(() => ml.Peft().Ensemble([a, a])).Message,
            "appears twice");
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentException>(() => ml.Peft().Ensemble([])).Message,
            "at least one member");
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentException>(() => ml.Peft().Ensemble([a], [1, 2])).Message,
            "2 weight(s) for 1 member(s)");
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Peft().Ensemble([a], [-1]));
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Peft().Ensemble([a], [0]));
    }
}
